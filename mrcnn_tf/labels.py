"""`LabelMap`: the model's contiguous class ids 1..K and a dataset's own category ids and names.

Class 0 is background. Dataset category ids may be any distinct integers (0 included); the map
travels with checkpoints and exports, and outputs use the dataset's own ids. The data readers,
the evaluation and the exports all use it, so it lives on the ground floor.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Contiguous class ids 1..K <-> dataset category ids and names.

    Contiguous id i (1-based) has dataset id `dataset_ids[i - 1]` and name `names[i - 1]`.
    Dataset ids may be any distinct integers (0 allowed, gaps allowed, any order).
    """

    dataset_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        # Normalise lists / NumPy ints so equality and hashing behave and JSON stays plain.
        object.__setattr__(self, "dataset_ids", tuple(int(i) for i in self.dataset_ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.dataset_ids) != len(self.names):
            raise ValueError(
                f"LabelMap: {len(self.dataset_ids)} dataset ids but {len(self.names)} names"
            )
        if len(set(self.dataset_ids)) != len(self.dataset_ids):
            dupes = sorted({i for i in self.dataset_ids if self.dataset_ids.count(i) > 1})
            raise ValueError(f"LabelMap: dataset category ids must be distinct, repeated: {dupes}")
        object.__setattr__(
            self, "_to_contiguous", {d: i + 1 for i, d in enumerate(self.dataset_ids)}
        )

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "LabelMap":
        """Label map whose dataset ids are 1..K, i.e. equal to the contiguous ids."""
        return cls(tuple(range(1, len(names) + 1)), tuple(names))

    @classmethod
    def from_coco_categories(cls, categories: Iterable[Mapping[str, Any]]) -> "LabelMap":
        """Label map from a COCO "categories" list, contiguous ids in increasing dataset id."""
        cats = sorted(categories, key=lambda c: int(c["id"]))
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c["name"]) for c in cats))

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.names)

    @property
    def class_names(self) -> list[str]:
        """["background", name_1, ..., name_K]: indexable by contiguous id."""
        return ["background", *self.names]

    def dataset_id(self, contiguous_id: int) -> int:
        """Dataset category id of contiguous class id `contiguous_id` (1..K)."""
        c = int(contiguous_id)
        if not 1 <= c <= len(self.dataset_ids):
            raise KeyError(
                f"contiguous class id {c} is outside 1..{len(self.dataset_ids)} of this label map"
            )
        return self.dataset_ids[c - 1]

    def contiguous_id(self, dataset_id: int) -> int:
        """Contiguous class id (1..K) of dataset category id `dataset_id`."""
        try:
            return self._to_contiguous[int(dataset_id)]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(
                f"dataset category id {int(dataset_id)} is not in the label map "
                f"(known ids: {sorted(self.dataset_ids)})"
            ) from None

    def name(self, contiguous_id: int) -> str:
        """Name of contiguous class id `contiguous_id` (1..K)."""
        self.dataset_id(contiguous_id)  # range check with a clear message
        return self.names[int(contiguous_id) - 1]

    def to_dict(self) -> dict:
        """JSON-able form: {"categories": [{"id": contiguous, "dataset_id": .., "name": ..}]}."""
        return {
            "categories": [
                {"id": i + 1, "dataset_id": d, "name": n}
                for i, (d, n) in enumerate(zip(self.dataset_ids, self.names))
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        """Inverse of `to_dict`; entries may come in any order, ids must be exactly 1..K."""
        try:
            cats = sorted(data["categories"], key=lambda c: int(c["id"]))
            ids = [int(c["id"]) for c in cats]
            dataset_ids = tuple(int(c["dataset_id"]) for c in cats)
            names = tuple(str(c["name"]) for c in cats)
        except (KeyError, TypeError) as e:
            raise ValueError(
                "label map dict must look like {'categories': [{'id', 'dataset_id', 'name'}, ...]}"
                f"; {e!r}"
            ) from None
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"label map contiguous ids must be 1..K, got {ids}")
        return cls(dataset_ids, names)

    def coco_categories(self) -> list[dict]:
        """COCO "categories" list, with the dataset's own ids."""
        return [{"id": d, "name": n} for d, n in zip(self.dataset_ids, self.names)]
