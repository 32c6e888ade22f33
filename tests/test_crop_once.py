"""Crop once: the face crop training reads back is the crop the server cuts, bit for bit.

training.extract_faces cuts each face at the model's input size with the serving pipeline,
training/dataset.py reads the PNG back unchanged, and training refuses crops of another size.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.video import SamplingConfig
from support.samples import SAMPLE_DATA
from training.data_dir import SplitError, build_split, load_split, write_split
from training.dataset import FaceCrops, split_items
from training.extract_faces import ExtractionConfig, extract_all, video_jobs
from training.recipe import TrainConfig
from training.train import train

pytestmark = pytest.mark.integration

CROP_SIZE = 224  # the demo recipe's input size (training/demo.yaml)
VIDEO = "fake/a_fs_wolfgang_c1__grace_hopper.mp4"  # a face in each of its 6 sampled frames
SAMPLING = SamplingConfig.exactly_every(20)


@pytest.fixture(scope="module")
def split_224(sample_videos, tmp_path_factory):
    """One sample video extracted at 224 px and split: every video in train."""
    folder = tmp_path_factory.mktemp("crop-once")
    (folder / "videos" / "fake").mkdir(parents=True)
    (folder / "videos" / VIDEO).symlink_to(SAMPLE_DATA / "videos" / VIDEO)
    config = ExtractionConfig(sampling=SAMPLING, crop_size=CROP_SIZE, landmarks=False)
    jobs = video_jobs([folder / "videos"], folder / "images")
    [outcome] = extract_all(jobs, config, workers=1, progress=False)
    assert outcome.faces == 6, outcome
    everything = {"train": 1.0, "val": 0.0, "test": 0.0}
    path = folder / "images" / "split.json"
    write_split(build_split(folder / "images", [], everything, seed=0), path)
    return path


def test_training_reads_back_the_crop_the_server_cuts(split_224):
    split = load_split(split_224)
    settings = ModelSettings(input_size=CROP_SIZE)
    assert (split["crop_size"], split["crop_scale"]) == (CROP_SIZE, settings.face_crop_scale)
    items = split_items(split, "train", split["image_dir"], fake_source="videos")
    training_crops = FaceCrops(items, settings, train=False)
    served = extract_faces(
        SAMPLE_DATA / "videos" / VIDEO, SAMPLING, make_detector(DetectorConfig()), settings
    )
    assert len(training_crops) == len(served.faces) == 6
    for index, face in enumerate(served.faces):
        crop, _, _ = training_crops[index]
        assert items[index].frame_index == face.frame_index
        assert crop.shape == face.crop.shape == (CROP_SIZE, CROP_SIZE, 3)
        assert np.array_equal(crop, face.crop), f"frame {face.frame_index}"


def test_crops_of_another_size_are_refused_not_resized(split_224, tmp_path):
    split = load_split(split_224)
    items = split_items(split, "train", split["image_dir"], fake_source="videos")
    with pytest.raises(ValueError, match="is 224x224 px, the model's input is 299x299"):
        FaceCrops(items, ModelSettings(input_size=299), train=False)[0]
    cut_at_299 = tmp_path / "split.json"
    write_split(dict(split, crop_size=299), cut_at_299)
    config = TrainConfig(split=str(cut_at_299), input_size=224, output_dir=str(tmp_path / "out"))
    with pytest.raises(SplitError, match="crops are 299 px but the model's input_size is 224: "):
        train(config)
    with pytest.raises(SplitError, match="re-extract the faces with --crop-size 224"):
        train(config)
