"""Manifest and leak-free splits."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from training.data_dir import assign_groups, build_split, main, split_groups

pytestmark = pytest.mark.integration


def test_no_video_or_group_on_two_sides(split_file):
    split = json.loads(split_file.read_text())
    sides_of_group: dict[str, set[str]] = {}
    for video in split["videos"]:
        sides_of_group.setdefault(video["group"], set()).add(video["split"])
    assert all(len(sides) == 1 for sides in sides_of_group.values()), sides_of_group
    ids = [video["video_id"] for video in split["videos"]]
    assert len(ids) == len(set(ids)) == 7


def test_fakes_stay_with_the_real_clip_they_were_made_from(split_file):
    videos = {v["video_id"]: v for v in json.loads(split_file.read_text())["videos"]}
    assert videos["a_fs_wolfgang_c1__grace_hopper"]["group"] == "pexels_woman"
    assert videos["a_fs_wolfgang_c1__grace_hopper"]["split"] == videos["a_wolfgang_c1"]["split"]


def test_every_split_is_used_and_crops_are_listed(split_file):
    split = json.loads(split_file.read_text())
    assert {v["split"] for v in split["videos"]} == {"train", "val", "test"}
    wolfgang = next(v for v in split["videos"] if v["video_id"] == "a_wolfgang_c1")
    assert len(wolfgang["crops"]) == 6
    assert len(wolfgang["crops"][0]["landmarks"]) == 68
    assert wolfgang["folder"] == "real/a_wolfgang_c1"


def test_same_seed_same_split_other_seed_may_differ(extracted_images):
    image_dir, _ = extracted_images
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    first = build_split(image_dir, None, fractions, seed=3)
    again = build_split(image_dir, None, fractions, seed=3)
    assert first == again


def test_faceforensics_style_names_join_their_target():
    records = [
        {"video_id": "000", "label": "real"},
        {"video_id": "001", "label": "real"},
        {"video_id": "000_003", "label": "fake"},
        {"video_id": "other", "label": "fake"},
    ]
    groups = assign_groups(records, {})
    assert groups == {"000": "000", "001": "001", "000_003": "000", "other": "other"}


def test_greedy_split_is_stratified_by_label():
    groups = {f"g{i}": Counter(real=1, fake=1) for i in range(20)}
    assignment = split_groups(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    sizes = Counter(assignment.values())
    assert sizes == {"train": 14, "val": 3, "test": 3}


def test_command_line_writes_the_split_file(extracted_images, tmp_path, capsys):
    image_dir, _ = extracted_images
    output = tmp_path / "my_split.json"
    assert main(["--image_dir", str(image_dir), "--output", str(output), "--seed", "1"]) == 0
    assert json.loads(output.read_text())["seed"] == 1
    assert "train:" in capsys.readouterr().out


def test_split_file_finds_its_images_from_any_folder(split_file, extracted_images, monkeypatch):
    from training.data_dir import load_split

    image_dir, _ = extracted_images
    assert json.loads(split_file.read_text())["image_dir"] == "."  # relative to the split file
    monkeypatch.chdir("/")
    assert load_split(split_file)["image_dir"] == str(image_dir.resolve())
