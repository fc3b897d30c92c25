"""What the keypoints task's two children share (benchmarks/tasks/keypoints_mrcnn_tf.py,
keypoints_torchvision.py): the parts each times, the keypoint head's analytic FLOPs, and the
result of one framework at one size.

Imports neither TensorFlow nor torch.
"""

from benchmarks import timing

PARTS = ("end_to_end", "without_keypoints", "keypoint_branch")
# The transposed conv of both heads (KeypointHead.score_lowres, KeypointRCNNPredictor): 4 x 4,
# stride 2, so 14 x 14 pooled features give 28 x 28 maps, bilinearly upsampled to 56 x 56.
DECONV_KERNEL = 4


def keypoint_head_flops(pool_size, in_channels, conv_dim, num_convs, num_keypoints,
                        deconv_kernel=DECONV_KERNEL):
    """Analytic FLOPs of one RoI through a Keypoint R-CNN head (1 multiply-add = 2 FLOP).

    `num_convs` 3x3 "same" convs at pool_size x pool_size, the first in_channels -> conv_dim
    and the others conv_dim -> conv_dim, then the deconv_kernel x deconv_kernel stride-2
    transposed conv to `num_keypoints` maps, each of whose pool_size^2 input pixels meets the
    whole kernel once. Biases, ReLUs and the 2x bilinear upsample are not counted (under 0.1%).

    R50-FPN (14, 256, 512, 8, 17): 2 * 196 * 9 * (256 * 512 + 7 * 512^2) + 2 * 196 * 16 * 512
    * 17 = 6.99 GFLOP per RoI (the first conv reads the FPN's 256 channels, not 512).

    Returns dict of ints: convs, transposed_conv, per_roi (their sum).
    """
    area = int(pool_size) ** 2
    widths = [int(in_channels)] + [int(conv_dim)] * int(num_convs)  # each conv's input width
    convs = sum(2 * area * 9 * cin * int(conv_dim) for cin in widths[:-1])
    transposed = 2 * area * int(deconv_kernel) ** 2 * widths[-1] * int(num_keypoints)
    return {"convs": convs, "transposed_conv": transposed, "per_roi": convs + transposed}


def time_parts(calls, spec, size):
    """timing.timed_row of each of PARTS (calls: name -> zero-argument callable that blocks
    until done): {name: row}, each with its latency statistics and the peak RSS of its runs."""
    return {name: timing.timed_row(calls[name], spec, size=size, batch=1, part=name)
            for name in PARTS}


def size_result(framework, size, parts, detections, head_shape, flop_check, **extra):
    """The JSON of one framework at one size.

    Args:
      parts: `time_parts`' rows; detections: dict min_detections (fewest detections of the
        end-to-end runs), keypoint_rows (RoIs the keypoint head ran on), detections_per_image.
      head_shape: `keypoint_head_flops` keyword arguments read off the built head.
      flop_check: the keypoint branch's FLOPs counted another way ({"counted", "source"}).
      extra: added as they are (model, threads, keypoints_shape, ...); total_flops (one
        inference) also gives total_gflop and achieved_gflops.
    """
    flops = keypoint_head_flops(**head_shape)
    branch_flops = flops["per_roi"] * detections["keypoint_rows"]
    end_ms = parts["end_to_end"]["median_ms"]
    branch_ms = parts["keypoint_branch"]["median_ms"]
    result = {"framework": framework, "size": int(size), "batch": 1, "precision": "float32",
              "parts": parts, **detections,
              "keypoint_head": {"shape": head_shape, "flops_per_roi": flops},
              "keypoint_flops": branch_flops,
              "keypoint_flop_check": dict(flop_check, analytic=branch_flops),
              "keypoint_gflop": round(branch_flops / 1e9, 3),
              "keypoint_achieved_gflops": round(branch_flops / 1e6 / branch_ms, 2),
              "keypoint_share": round(branch_ms / end_ms, 4),
              "keypoint_share_by_difference": round(
                  (end_ms - parts["without_keypoints"]["median_ms"]) / end_ms, 4)}
    result.update(extra)
    if result.get("total_flops"):
        result["total_gflop"] = round(result["total_flops"] / 1e9, 3)
        result["achieved_gflops"] = round(result["total_flops"] / 1e6 / end_ms, 2)
    return result
