"""List the extracted crops per video and split the videos into train / val / test.

    python -m training.data_dir --image-dir images [--metadata labels.csv] [--output split.json]

The split is by group of videos, never by frame: all crops of a video, and every video of a
group, land on one side. A group is the identity or source clip behind a video, so a fake made
from a real clip stays with that clip. Groups come from `--metadata` (a CSV with a `file`
column and a `group` column, or an `identity` column where fakes read `target<-source`, as in
../shared/data/labels.csv); without it a fake named `<real-id>_<anything>` joins that real
video's group (FaceForensics++ names fakes `000_003` after target 000), any other video is its
own group. Groups are assigned greedily, largest first, to the split furthest below its share
of each label; a split left empty takes the smallest group of the largest. Seeded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.extract_faces import FACES_FILE, LABELS

SPLITS = ("train", "val", "test")
SPLIT_FORMAT = 1


@dataclass(frozen=True)
class VideoEntry:
    video_id: str
    label: str
    group: str
    folder: str  # relative to the image dir: <label>/<video-id>
    crops: list[dict]  # {"file", "frame_index", "landmarks"?} per face crop


def read_extracted(image_dir: Path) -> list[dict]:
    """Every faces.json under `image_dir/<label>/<video-id>/`, in a stable order."""
    records = []
    for label in LABELS:
        for faces_file in sorted((image_dir / label).glob(f"*/{FACES_FILE}")):
            records.append(json.loads(faces_file.read_text()))
    return records


def groups_from_metadata(metadata_csv: Path) -> dict[str, str]:
    """video id (file stem) -> group, from a `group` or `identity` column."""
    groups = {}
    with open(metadata_csv, newline="") as file:
        for row in csv.DictReader(file):
            video_id = Path(row["file"]).stem
            if row.get("group"):
                groups[video_id] = row["group"]
            elif row.get("identity"):
                groups[video_id] = row["identity"].split("<-")[0]
    return groups


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


def build_split(
    image_dir: Path, metadata_csv: Path | None, fractions: dict[str, float], seed: int
) -> dict:
    records = read_extracted(image_dir)
    if not records:
        raise SystemExit(f"data_dir: no {FACES_FILE} under {image_dir}; run extract_faces first")
    metadata_groups = groups_from_metadata(metadata_csv) if metadata_csv else {}
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
        videos.append(
            {
                "video_id": record["video_id"],
                "label": record["label"],
                "group": group,
                "split": group_splits[group],
                "folder": f"{record['label']}/{record['video_id']}",
                "video": record["video"],
                "frames": len(record["frames"]),
                "crops": crops,
            }
        )
    return {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "fractions": fractions,
        "image_dir": str(image_dir),
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
        raise SystemExit(f"{path} is not a split file of format {SPLIT_FORMAT}")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-dir", "--image_dir", type=Path, default=Path("images"))
    parser.add_argument("--metadata", type=Path, help="CSV with file + group or identity")
    parser.add_argument("--output", type=Path, help="split file (default IMAGE_DIR/split.json)")
    parser.add_argument("--val", type=float, default=0.15, help="share of videos for validation")
    parser.add_argument("--test", type=float, default=0.15, help="share of videos for test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    fractions = {"train": 1.0 - args.val - args.test, "val": args.val, "test": args.test}
    split = build_split(args.image_dir, args.metadata, fractions, args.seed)
    output = args.output or args.image_dir / "split.json"
    write_split(split, output)
    print(f"data_dir: wrote {output}\n{describe(split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
