"""List the extracted crops per video and split the videos into train / val / test.

    python -m training.data_dir --image-dir images/224 [--metadata labels.csv ...] [--output F]

The split is by group of videos, never by frame: all crops of a video, and every video of a
group, land on one side. A group is the identity or source clip behind a video, so a fake made
from a real clip stays with that clip. Groups come from `--metadata` (a CSV with a `file`
column and a `group` column, or an `identity` column where fakes read `target<-source`, as in
../shared/data/labels.csv; repeat the flag to merge several CSVs, which must not disagree on
a video); without it a fake named `<real-id>_<anything>` joins that real video's group
(FaceForensics++ names fakes `000_003` after target 000), any other video is its own group.
Groups are assigned greedily, largest first, to the split furthest below its share of each
label; a split left empty takes the smallest group of the largest. Seeded.

Each video also carries, from the metadata where it has them, its swap `method`, its `crf` and,
for a fake, `source_video`: the real clip it was made from (`target=<clip>` in a `source`
column) and `donor_group`: whose face was pasted in (`identity` `target<-source`; none where
the CSV does not say). The split records the `crop_size` and `crop_scale` its crops were cut
at, which the model trained on it must use (`check_crop_size`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model.schema import ConfigError, add_arguments, from_arguments
from training.extract_faces import FACES_FILE, LABELS, video_id_of

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 2  # 2: crop_size and crop_scale; per video method, crf and source_video
# A fake's `source` column names the real clip it was made from: `target=<clip stem>`.
SOURCE_CLIP = re.compile(r"\btarget=([^\s;,()]+)")


class SplitError(ValueError):
    """A split that cannot be built or used as asked; the message says what to do."""


@dataclass(frozen=True)
class VideoMetadata:
    """What a labels CSV says of one video."""

    group: str | None = None
    method: str | None = None
    crf: int | None = None
    source_video: str | None = None  # a fake's real clip (its video id)
    donor_group: str | None = None  # a fake's source face: the group after `<-` in `identity`


def read_extracted(image_dir: Path) -> list[dict]:
    """Every faces.json under `image_dir/<label>/<video-id>/`, in a stable order."""
    records = []
    for label in LABELS:
        for faces_file in sorted((image_dir / label).glob(f"*/{FACES_FILE}")):
            records.append(json.loads(faces_file.read_text()))
    return records


def read_metadata(metadata_csvs: Sequence[Path]) -> dict[str, VideoMetadata]:
    """video id -> its metadata, merged over the CSVs; SplitError where two disagree."""
    merged: dict[str, VideoMetadata] = {}
    where: dict[str, Path] = {}
    for metadata_csv in metadata_csvs:
        if not Path(metadata_csv).is_file():
            raise SplitError(f"metadata file {metadata_csv} does not exist")
        with open(metadata_csv, newline="") as file:
            for row in csv.DictReader(file):
                video_id = _video_id(row["file"])
                metadata = _row_metadata(row, metadata_csv)
                if video_id in merged and merged[video_id] != metadata:
                    raise SplitError(
                        f"{where[video_id]} and {metadata_csv} disagree on {video_id}: "
                        f"{merged[video_id]} vs {metadata}"
                    )
                merged[video_id], where[video_id] = metadata, Path(metadata_csv)
    return merged


def _video_id(file: str) -> str:
    """The id extract_faces gives the video at `file` (a path under real/ or fake/)."""
    parts = Path(file).parts
    label_at = next((i for i, part in enumerate(parts) if part in LABELS), None)
    return video_id_of(Path(*parts[label_at + 1 :])) if label_at is not None else Path(file).stem


def _row_metadata(row: dict[str, str], metadata_csv: Path) -> VideoMetadata:
    target, _, donor = (row.get("identity") or "").partition("<-")
    group = row.get("group") or target or None
    crf = (row.get("crf") or "").strip()
    if crf and not crf.isdigit():
        raise SplitError(f"{metadata_csv}: crf of {row['file']} is {crf!r}, not a whole number")
    found = SOURCE_CLIP.search(row.get("source") or "")
    fake = row.get("label") == "fake" or "fake" in Path(row["file"]).parts
    return VideoMetadata(
        group=group,
        method=row.get("method") or None,
        crf=int(crf) if crf else None,
        source_video=found.group(1) if fake and found else None,
        donor_group=(donor.strip() or None) if fake else None,
    )


def assign_groups(records: list[dict], metadata_groups: dict[str, str]) -> dict[str, str]:
    """video id -> group for every extracted video."""
    real_ids = sorted((r["video_id"] for r in records if r["label"] == "real"), key=len)
    groups = {}
    for record in records:
        video_id = record["video_id"]
        if video_id in metadata_groups:
            groups[video_id] = metadata_groups[video_id]
        elif record["label"] == "fake":
            target = next(
                (real for real in reversed(real_ids) if video_id.startswith(real + "_")), None
            )
            groups[video_id] = target or video_id
        else:
            groups[video_id] = video_id
    return groups


def split_groups(
    group_labels: dict[str, Counter], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """group -> split, so each split's share of each label is near `fractions`."""
    rng = random.Random(seed)
    order = list(group_labels)
    rng.shuffle(order)
    order.sort(key=lambda group: -sum(group_labels[group].values()))  # stable: ties stay shuffled
    totals = Counter()
    for counts in group_labels.values():
        totals.update(counts)
    placed = {split: Counter() for split in fractions}
    assignment = {}
    for group in order:
        counts = group_labels[group]

        def deficit(split: str, counts: Counter = counts) -> float:
            wanted = fractions[split]
            return sum(
                wanted * totals[label] - placed[split][label] for label in counts if totals[label]
            ) / max(1, sum(totals[label] for label in counts))

        split = max(fractions, key=deficit)
        assignment[group] = split
        placed[split].update(counts)
    # A split with a share but no group takes the smallest group of the largest split.
    for split in fractions:
        if fractions[split] > 0 and not placed[split]:
            largest = max(placed, key=lambda s: sum(placed[s].values()))
            movable = [g for g in order if assignment[g] == largest]
            if len(movable) > 1:
                group = min(movable, key=lambda g: sum(group_labels[g].values()))
                assignment[group] = split
                placed[largest].subtract(group_labels[group])
                placed[split].update(group_labels[group])
    return assignment


def crop_geometry(records: list[dict]) -> tuple[int, float]:
    """(crop_size, crop_scale) shared by every video's crops; SplitError where they differ."""
    videos_of: dict[tuple, list[str]] = defaultdict(list)
    for record in records:
        videos_of[(record.get("crop_size"), record.get("crop_scale"))].append(record["video_id"])
    if len(videos_of) == 1 and None not in next(iter(videos_of)):
        return next(iter(videos_of))
    found = "; ".join(
        f"{size} px at scale {scale}: {', '.join(videos[:3])}{', ...' if len(videos) > 3 else ''}"
        for (size, scale), videos in videos_of.items()
    )
    raise SplitError(
        f"the videos' crops were not all cut alike ({found}): extract every video of one image "
        "dir with the same --crop-size (and re-extract any without one)"
    )


def check_crop_size(split: dict, input_size: int) -> None:
    """SplitError unless the split's crops are `input_size` px, the model's input: training
    and the server must see the same pixels, so a crop is never resized after it is cut."""
    if split["crop_size"] != input_size:
        raise SplitError(
            f"the split's face crops are {split['crop_size']} px but the model's input_size is "
            f"{input_size}: re-extract the faces with --crop-size {input_size} "
            "(training.extract_faces) and split them again (training.data_dir)"
        )


def check_fake_methods(split: dict, methods: tuple[str, ...] | None) -> None:
    """SplitError where a swap method asked for has no fake video in the split to train on."""
    found = {v["method"] for v in split["videos"] if v["label"] == "fake"} - {None}
    missing = sorted(set(methods or ()) - found)
    if missing:
        raise SplitError(
            f"no fake video of the split was made by {missing}; its methods: {sorted(found)}"
        )


def build_split(
    image_dir: Path, metadata_csvs: Sequence[Path], fractions: dict[str, float], seed: int
) -> dict:
    records = read_extracted(image_dir)
    if not records:
        raise SplitError(f"no {FACES_FILE} under {image_dir}; run training.extract_faces first")
    crop_size, crop_scale = crop_geometry(records)
    metadata = read_metadata(metadata_csvs)
    metadata_groups = {video_id: m.group for video_id, m in metadata.items() if m.group}
    video_groups = assign_groups(records, metadata_groups)
    group_labels: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        group_labels[video_groups[record["video_id"]]][record["label"]] += 1
    group_splits = split_groups(group_labels, fractions, seed)
    videos = []
    for record in records:
        crops = [
            {"file": face["file"], "frame_index": frame["frame_index"], **_landmarks(face)}
            for frame in record["frames"]
            for face in frame["faces"]
        ]
        group = video_groups[record["video_id"]]
        known = metadata.get(record["video_id"], VideoMetadata())
        videos.append(
            {
                "video_id": record["video_id"],
                "label": record["label"],
                "group": group,
                "split": group_splits[group],
                "folder": f"{record['label']}/{record['video_id']}",
                "video": record["video"],
                "method": known.method,
                "crf": known.crf,
                "source_video": known.source_video,
                "donor_group": known.donor_group,
                "frames": len(record["frames"]),
                "crops": crops,
            }
        )
    return {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "fractions": fractions,
        "image_dir": str(image_dir),
        "crop_size": crop_size,
        "crop_scale": crop_scale,
        "videos": videos,
    }


def write_split(split: dict, path: Path) -> None:
    """Save with `image_dir` relative to the split file, so the pair can move together."""
    portable = dict(split, image_dir=os.path.relpath(Path(split["image_dir"]), path.parent))
    path.write_text(json.dumps(portable, indent=1))


def load_split(path: Path) -> dict:
    """Read a split file; its `image_dir` comes back as a path usable from any folder."""
    split = json.loads(Path(path).read_text())
    if split.get("format") != SPLIT_FORMAT:
        raise SplitError(
            f"{path} is not a split file of format {SPLIT_FORMAT} (it says {split.get('format')}): "
            "run training.data_dir again"
        )
    split["image_dir"] = str((Path(path).parent / split["image_dir"]).resolve())
    return split


def _landmarks(face: dict) -> dict:
    return {"landmarks": face["landmarks"]} if "landmarks" in face else {}


def describe(split: dict) -> str:
    lines = []
    for name in SPLITS:
        videos = [v for v in split["videos"] if v["split"] == name]
        labels = Counter(v["label"] for v in videos)
        groups = sorted({v["group"] for v in videos})
        crops = sum(len(v["crops"]) for v in videos)
        lines.append(
            f"  {name}: {len(videos)} videos ({labels['real']} real, {labels['fake']} fake), "
            f"{crops} crops, groups {groups}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class SplitCommand:
    """`python -m training.data_dir`'s settings, a flag per field."""

    image_dir: Path = Path("images")
    metadata: tuple[Path, ...] = field(
        default=(),
        metadata={"help": "CSVs with file + group or identity (and method, crf, source), merged"},
    )
    output: Path | None = field(default=None, metadata={"help": "default IMAGE_DIR/split.json"})
    val: float = field(default=0.15, metadata={"help": "share of videos for validation"})
    test: float = field(default=0.15, metadata={"help": "share of videos for test"})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.val < 0 or self.test < 0 or self.val + self.test >= 1:
            raise ValueError(f"val and test must be >= 0 and leave some videos to train on, "
                             f"got {self.val} and {self.test}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, SplitCommand)
    try:
        command = from_arguments(parser.parse_args(argv), SplitCommand)
        fractions = {"train": 1.0 - command.val - command.test, "val": command.val,
                     "test": command.test}  # fmt: skip
        split = build_split(command.image_dir, command.metadata, fractions, command.seed)
    except (ConfigError, SplitError) as error:
        print(f"data_dir: {error}", file=sys.stderr)
        return 1
    output = command.output or command.image_dir / "split.json"
    write_split(split, output)
    print(f"data_dir: wrote {output}\n{describe(split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
