"""COCO-like inputs for the coco_scale benchmarks: photo-like images in a COCO-like mix of
sizes, and a COCO-format folder of them (JPEG files plus polygon annotations).

The pixels are synthetic but compress like photographs: a 1/f ("pink") noise field, whose
power spectrum falls off with frequency as natural images' does, in luminance and weaker
chroma, plus a little sensor-like grain, with a few textured polygon "objects" on top. At
JPEG quality 90 the mix below averages about 160 kB a file, close to COCO train2017's
(about 18 GB for 118k images, 155 kB a file); flat colours would compress to a few kB and
flatter any comparison of stored bytes.
"""

import json
import os
from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np


# (width, height, weight): a synthetic stand-in for COCO train2017's sizes, not measured
# counts. COCO images are scaled to at most 640 px a side and train2017 is dominated by
# 640x480 and 480x640 photos (with 640x427 / 427x640 3:2 photos next); a few are square
# and a few are panoramas or strips. The weights sum to 1.
COCO_LIKE_SIZES: Tuple[Tuple[int, int, float], ...] = (
    (640, 480, 0.42),
    (480, 640, 0.20),
    (640, 427, 0.18),
    (427, 640, 0.07),
    (640, 640, 0.05),
    (512, 512, 0.03),
    (640, 200, 0.03),
    (200, 640, 0.02),
)

JPEG_QUALITY = 90
CATEGORY_NAMES = ("thing", "animal", "vehicle")
OBJECTS_PER_IMAGE = (2, 5)  # inclusive range of polygons drawn (and annotated) per image


class CocoFolder(NamedTuple):
    """A written COCO-format folder: its annotations JSON, its images folder, the number of
    images and of annotations, and the total bytes of the JPEG files."""
    annotations: str
    images: str
    num_images: int
    num_annotations: int
    jpeg_bytes: int


def coco_like_sizes(count: int, seed: int = 0, scale: float = 1.0) -> List[Tuple[int, int]]:
    """`count` (width, height) pairs in the proportions of COCO_LIKE_SIZES, shuffled.

    Counts per size are apportioned by largest remainder, so even a small `count` holds the
    mix as closely as whole images can (24 images: 10 of 640x480, 5 of 480x640, ...), and the
    same `count` and `seed` always give the same list. `scale` shrinks every side (rounded,
    at least 16 px) for quick runs.
    """
    if count < 1:
        raise ValueError(f"coco_like_sizes: count={count}, expected >= 1")
    weights = np.array([w for _, _, w in COCO_LIKE_SIZES], np.float64)
    exact = count * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[:count - counts.sum()]:
        counts[index] += 1
    sizes = [(max(16, round(w * scale)), max(16, round(h * scale)))
             for (w, h, _), n in zip(COCO_LIKE_SIZES, counts) for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(sizes))
    return [sizes[i] for i in order]


def _pink_noise(rng: np.random.Generator, height: int, width: int, exponent: float
                ) -> np.ndarray:
    """float64 [H, W], zero mean and unit std, with amplitude falling as 1/f**exponent."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fy ** 2 + fx ** 2)
    frequency[0, 0] = 1.0
    amplitude = frequency ** -exponent
    amplitude[0, 0] = 0.0  # no DC: the mean colour is set separately
    phases = np.exp(2j * np.pi * rng.random(amplitude.shape))
    field = np.fft.irfft2(amplitude * phases, s=(height, width))
    return field / max(field.std(), 1e-12)


def _texture(rng: np.random.Generator, height: int, width: int, contrast: float
             ) -> np.ndarray:
    """float64 [H, W, 3]: a random mean colour, pink-noise luminance of std `contrast` and
    weaker chroma (about a fifth of it: photographs are mostly muted colours)."""
    luminance = _pink_noise(rng, height, width, 1.0)[..., None] * contrast
    chroma = np.stack([_pink_noise(rng, height, width, 1.3) for _ in range(2)], axis=-1)
    colour = chroma @ rng.normal(0.0, contrast / 5.0, (2, 3))
    return luminance + colour + rng.uniform(50.0, 200.0, 3)


def _star_polygon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float64 [V, 2] (x, y) vertices of a random star-shaped polygon inside the image."""
    radius = rng.uniform(0.08, 0.3) * min(height, width)
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, rng.integers(5, 11)))
    radii = radius * rng.uniform(0.55, 1.0, angles.shape)
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=-1)
    return np.clip(points, 0.0, [width - 1.0, height - 1.0])


def photo(width: int, height: int, rng: np.random.Generator
          ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """A photo-like image and its objects.

    Returns:
      (image uint8 [H, W, 3] RGB, objects: list of (category index 0..len(CATEGORY_NAMES)-1,
      polygon float64 [V, 2] (x, y) pixels)), objects in drawing order (later ones may cover
      earlier ones, as in photos).
    """
    image = _texture(rng, height, width, 40.0)
    objects = []
    for _ in range(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1)):
        polygon = _star_polygon(rng, height, width)
        inside = np.zeros((height, width), np.uint8)
        cv2.fillPoly(inside, [np.round(polygon).astype(np.int32)], 1)
        # The object's own texture, made for its bounding box only.
        x1, y1, w, h = cv2.boundingRect(inside)
        box = inside[y1:y1 + h, x1:x1 + w].astype(bool)
        image[y1:y1 + h, x1:x1 + w][box] = _texture(rng, h, w, 25.0)[box]
        objects.append((int(rng.integers(len(CATEGORY_NAMES))), polygon))
    image += rng.normal(0.0, 3.0, image.shape)  # sensor-like grain
    return np.clip(image, 0, 255).astype(np.uint8), objects


def photos(sizes: Sequence[Tuple[int, int]], seed: int = 0) -> List[np.ndarray]:
    """uint8 [H, W, 3] photo-like images, one per (width, height) of `sizes`."""
    rng = np.random.default_rng(seed)
    return [photo(width, height, rng)[0] for width, height in sizes]


def _annotation(annotation_id: int, image_id: int, category: int, polygon: np.ndarray) -> dict:
    """The COCO annotation of one polygon object."""
    xs, ys = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))  # shoelace
    return {"id": annotation_id, "image_id": image_id, "category_id": category + 1,
            "iscrowd": 0, "area": round(float(area), 2),
            "bbox": [round(float(v), 2) for v in (xs.min(), ys.min(), np.ptp(xs), np.ptp(ys))],
            "segmentation": [[round(float(v), 2) for v in polygon.reshape(-1)]]}


def write_coco_folder(root: str, sizes: Sequence[Tuple[int, int]], seed: int = 0
                      ) -> CocoFolder:
    """Writes root/images/NNNNNN.jpg (one photo per (width, height) of `sizes`, JPEG quality
    JPEG_QUALITY) and root/annotations.json (COCO instances format: a polygon annotation per
    object, categories CATEGORY_NAMES with ids 1..)."""
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries, annotations, jpeg_bytes = [], [], 0
    for image_id, (width, height) in enumerate(sizes, start=1):
        image, objects = photo(width, height, rng)
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])  # OpenCV is BGR
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {width}x{height} JPEG")
        file_name = f"{image_id:06d}.jpg"
        with open(os.path.join(images_dir, file_name), "wb") as f:
            f.write(encoded.tobytes())
        jpeg_bytes += encoded.size
        entries.append({"id": image_id, "file_name": file_name, "width": width,
                        "height": height})
        for category, polygon in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, category, polygon))
    coco = {"images": entries, "annotations": annotations,
            "categories": [{"id": i, "name": name}
                           for i, name in enumerate(CATEGORY_NAMES, start=1)]}
    annotations_path = os.path.join(root, "annotations.json")
    with open(annotations_path, "w") as f:
        json.dump(coco, f)
    return CocoFolder(annotations_path, images_dir, len(entries), len(annotations), jpeg_bytes)
