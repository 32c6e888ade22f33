"""Face crops of one split as a torch Dataset, with self-blended fakes and augmentation.

Crops were cut by the serving pipeline (training.extract_faces) at the model's input size, as
the server cuts them, and are never resized here (a crop of another size is an error); they only
get the training-time changes, and batches are made by `model.tensors.crops_to_batch`, the
function the server uses, so training and serving see the same tensors for the same face.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from model.network import ModelSettings
from model.tensors import crops_to_batch
from training.augment import AugmentConfig, augment_with_mask
from training.boundary import boundary_map
from training.sbi import Donor, SelfBlendConfig, landmark_alignment, self_blend

FAKE_SOURCES = ("both", "videos", "sbi")
# Class indices of the training targets (the wire's labels are the strings of protocol/wire.py).
REAL_CLASS, FAKE_CLASS = 0, 1
# An other-face blend takes, of this many random crops of other people, the one whose face
# shape is closest to the target's (Face X-ray searches its donors the same way).
DONOR_CANDIDATES = 8


@dataclass(frozen=True)
class CropItem:
    path: str
    label: int
    video_id: str
    frame_index: int
    landmarks: np.ndarray | None
    self_blended: bool = False
    group: str = ""  # the identity group: an other-face blend takes its donor from another


def split_items(
    split: dict,
    split_name: str,
    image_dir: str,
    fake_source: str,
    fake_methods: tuple[str, ...] | None = None,
) -> list[CropItem]:
    """Crops of `split_name`; with `fake_source` "sbi" or "both", each real crop with
    landmarks appears a second time as a self-blended fake; with `fake_methods`, only the
    fake videos made by one of those swap methods."""
    if fake_source not in FAKE_SOURCES:
        raise ValueError(f"fake_source must be one of {FAKE_SOURCES}, got {fake_source!r}")
    items = []
    for video in split["videos"]:
        if video["split"] != split_name:
            continue
        label = FAKE_CLASS if video["label"] == "fake" else REAL_CLASS
        unwanted = fake_methods is not None and video["method"] not in fake_methods
        if label == FAKE_CLASS and (fake_source == "sbi" or unwanted):
            continue
        for crop in video["crops"]:
            landmarks = np.asarray(crop["landmarks"], np.float32) if "landmarks" in crop else None
            path = f"{image_dir}/{video['folder']}/{crop['file']}"
            group = video.get("group", video["video_id"])
            item = CropItem(path, label, video["video_id"], crop["frame_index"], landmarks)
            items.append(dataclasses.replace(item, group=group))
            if label == REAL_CLASS and fake_source != "videos" and landmarks is not None:
                blended_id = f"{video['video_id']}#self-blended"
                items.append(
                    dataclasses.replace(
                        item, label=FAKE_CLASS, video_id=blended_id, self_blended=True, group=group
                    )
                )
    return items


def validation_items(split: dict, image_dir: str):
    """Validation crops: the split's real fakes, or self-blended ones where it has none."""
    has_fakes = any(v["split"] == "val" and v["label"] == "fake" for v in split["videos"])
    return split_items(split, "val", image_dir, "videos" if has_fakes else "sbi")


def no_face_videos(split: dict, split_name: str) -> dict[str, int]:
    return {
        v["video_id"]: int(v["label"] == "fake")
        for v in split["videos"]
        if v["split"] == split_name and not v["crops"]
    }


def read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read face crop {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FaceCrops(Dataset):
    """(H, W, 3) uint8 crops at the model's input size, with labels; random changes only when
    `train`. Randomness is seeded by (seed, epoch, index): runs repeat, whatever the workers.
    With `boundary_targets`, each item also carries its blend's boundary map (training/boundary.py:
    zeros for a real crop, NaN for a real swap, whose blend is unknown)."""

    def __init__(
        self,
        items: list[CropItem],
        settings: ModelSettings,
        train: bool,
        seed: int = 0,
        augment_config: AugmentConfig = AugmentConfig(),
        blend_config: SelfBlendConfig = SelfBlendConfig(),
        boundary_targets: bool = False,
    ) -> None:
        self.items = items
        self.boundary_targets = boundary_targets
        self.settings = settings
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment_config = augment_config
        self.blend_config = blend_config
        self.donors = [
            i
            for i, item in enumerate(items)
            if item.label == REAL_CLASS and item.landmarks is not None
        ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple:
        """(crop, label, index), and the crop's boundary map with `boundary_targets`."""
        item = self.items[index]
        image = read_rgb(item.path)
        size = self.settings.input_size
        if image.shape[:2] != (size, size):
            raise ValueError(
                f"face crop {item.path} is {image.shape[1]}x{image.shape[0]} px, the model's "
                f"input is {size}x{size}: re-extract the faces with --crop-size {size}"
            )
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if item.self_blended:
            # The draw is skipped when other faces are off, so such recipes repeat bit for bit.
            other_face = (
                self.blend_config.other_face > 0 and rng.random() < self.blend_config.other_face
            )
            donor = self.donor_for(item, rng) if other_face else None
            blended = self_blend(image, item.landmarks, rng, self.blend_config, donor)
            image, blend_mask = blended.image, blended.mask
        else:
            blend_mask = None
        if self.train:
            image, blend_mask = augment_with_mask(image, blend_mask, rng, self.augment_config)
        if not self.boundary_targets:
            return image, item.label, index
        target = boundary_map(blend_mask, size, size)
        if item.label == FAKE_CLASS and blend_mask is None:
            target[:] = np.nan  # a real swap: where it was blended is unknown
        return image, item.label, index, target

    def donor_for(self, item: CropItem, rng: np.random.Generator) -> Donor | None:
        """Of a few random real crops of other groups, the one whose landmarks align best with
        `item`'s; None when every real crop is of the item's own group."""
        others = [i for i in self.donors if self.items[i].group != item.group]
        if not others:
            return None
        picks = rng.choice(others, size=min(DONOR_CANDIDATES, len(others)), replace=False)
        best = min(
            picks, key=lambda i: landmark_alignment(self.items[i].landmarks, item.landmarks)[1]
        )
        return Donor(read_rgb(self.items[best].path), self.items[best].landmarks)

    def labels(self) -> np.ndarray:
        return np.array([item.label for item in self.items], dtype=np.int64)


class Collate:
    """DataLoader collate function: normalized batch through the serving code path."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings

    def __call__(self, samples: list[tuple]):
        images, labels, indices, *targets = zip(*samples, strict=True)
        batch = crops_to_batch(images, self.settings), torch.tensor(labels), torch.tensor(indices)
        return (*batch, *(torch.from_numpy(np.stack(maps)) for maps in targets))


def twin_indices(items: list[CropItem]) -> np.ndarray:
    """For each item, the index of its self-blended twin (the item right after it, cut from
    the same crop file), else -1."""
    twins = np.full(len(items), -1, dtype=np.int64)
    for index in range(len(items) - 1):
        item, following = items[index], items[index + 1]
        if following.self_blended and not item.self_blended and following.path == item.path:
            twins[index] = index + 1
    return twins


class TwinShuffle(Sampler[int]):
    """A shuffled order in which each real crop is followed by its self-blended twin (the SBI
    paper's paired batches): inside a pair only the blending differs, never who it is, so
    identity cannot tell real from fake. Reshuffled per epoch, seeded by (seed, epoch)."""

    def __init__(self, items: list[CropItem], seed: int) -> None:
        twins = twin_indices(items)
        is_twin = np.zeros(len(items), dtype=bool)
        is_twin[twins[twins >= 0]] = True
        self.groups: list[list[int]] = [
            [index] if twins[index] < 0 else [index, int(twins[index])]
            for index in range(len(items))
            if not is_twin[index]
        ]
        self.seed = seed
        self.epoch = 0
        self.size = len(items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for group in rng.permutation(len(self.groups)):
            yield from self.groups[group]

    def __len__(self) -> int:
        return self.size
