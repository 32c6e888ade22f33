"""Shared fixtures: the sample videos in ../shared/data and their labels, the small training
set, and the one TorchServe that the serving and browser tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.samples import SAMPLE_DATA, SampleVideo, read_labels


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where the data must be there (CI sets DEEPFAKE_REQUIRE_DATA=1), its absence stops the
    run instead of skipping most of the suite."""
    required = os.environ.get("DEEPFAKE_REQUIRE_DATA") == "1"
    if required and not (SAMPLE_DATA / "labels.csv").is_file():
        pytest.exit(
            f"sample videos not found in {SAMPLE_DATA}: DEEPFAKE_REQUIRE_DATA=1 needs them "
            "(set SAMPLE_DATA=... for make, or DEEPFAKE_SAMPLE_DATA=... for pytest)",
            returncode=1,
        )


@pytest.fixture(scope="session")
def sample_videos() -> list[SampleVideo]:
    if not (SAMPLE_DATA / "labels.csv").is_file():
        pytest.skip(f"sample videos not found in {SAMPLE_DATA} (set DEEPFAKE_SAMPLE_DATA)")
    return read_labels()


@pytest.fixture(scope="session")
def no_face_video(sample_videos: list[SampleVideo]) -> SampleVideo:
    return next(video for video in sample_videos if not video.face_frames)


@pytest.fixture(scope="session")
def one_face_video(sample_videos: list[SampleVideo]) -> SampleVideo:
    return next(video for video in sample_videos if video.name == "a_wolfgang_c1.mp4")


# A few sample videos, three identities and a video with no face, for the training tests.
SMALL_SET = {
    "real": [
        "a_wolfgang_c1.mp4",
        "a_still_grace_hopper.mp4",
        "a_still_astronaut.mp4",
        "a_noface_caminandes.mp4",
    ],
    "fake": [
        "a_fs_wolfgang_c1__grace_hopper.mp4",
        "a_fs_still_grace_hopper__astronaut.mp4",
        "a_fs_still_astronaut__grace_hopper.mp4",
    ],
}


@pytest.fixture(scope="session")
def small_video_dir(sample_videos, tmp_path_factory) -> Path:
    """videos/real and videos/fake with links to a few sample videos (never copies)."""
    folder = tmp_path_factory.mktemp("videos")
    for label, names in SMALL_SET.items():
        (folder / label).mkdir()
        for name in names:
            (folder / label / name).symlink_to(SAMPLE_DATA / "videos" / label / name)
    return folder


# Crops are cut once, at the input size of the model that uses them: the small set at the short
# training runs' 96 px (--input-size 96), and at the served checkpoint's 160 px for int8.
TRAINING_CROP_SIZE = 96
SERVED_CROP_SIZE = 160


@pytest.fixture(scope="session")
def extract_small_set(small_video_dir, tmp_path_factory):
    """crop size -> (image dir, outcomes) of training.extract_faces over the small set, each
    size extracted once per session."""
    from model.video import SamplingConfig
    from training.extract_faces import ExtractionConfig, extract_all, video_jobs

    extracted = {}

    def extract(crop_size: int):
        if crop_size not in extracted:
            image_dir = tmp_path_factory.mktemp(f"images-{crop_size}")
            config = ExtractionConfig(
                sampling=SamplingConfig.exactly_every(20), crop_size=crop_size
            )
            jobs = video_jobs([small_video_dir], image_dir)
            extracted[crop_size] = image_dir, extract_all(jobs, config, 1, progress=False)
        return extracted[crop_size]

    return extract


@pytest.fixture(scope="session")
def extracted_images(extract_small_set):
    """(image dir, outcomes) of the small set at `TRAINING_CROP_SIZE`."""
    return extract_small_set(TRAINING_CROP_SIZE)


def _split_by_identity(image_dir: Path) -> Path:
    """A split of the extracted small set by identity, from labels.csv."""
    from training.data_dir import build_split, write_split

    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    split = build_split(image_dir, [SAMPLE_DATA / "labels.csv"], fractions, seed=0)
    path = image_dir / "split.json"
    write_split(split, path)
    return path


@pytest.fixture(scope="session")
def split_file(extracted_images) -> Path:
    """The small set split by identity, crops at `TRAINING_CROP_SIZE` (the training tests')."""
    return _split_by_identity(extracted_images[0])


@pytest.fixture(scope="session")
def served_split_file(extract_small_set) -> Path:
    """The same split with crops at `SERVED_CROP_SIZE`, `served_checkpoint`'s input size: what
    an int8 model of that checkpoint is calibrated and checked on."""
    return _split_by_identity(extract_small_set(SERVED_CROP_SIZE)[0])


# One TorchServe for every test that can share it (test_serving, test_corpus, test_ui): the
# archives below, both loaded, with credentials in its environment that must not reach the
# workers (support/bad_inputs.py SECRETS).
# deepfake-v2.mar batches requests (the shipped config does not), so batching is tested too,
# and times two inference paths at worker start, so that choice is tested too.
V2_BATCH = {"batchSize": 4, "maxBatchDelay": 500}
V2_PATHS = "openvino-int8,torch-fp32"


@pytest.fixture(scope="session")
def served_checkpoint(tmp_path_factory) -> Path:
    """Random Xception weights at 160 px in the training checkpoint format."""
    from model.network import ModelSettings
    from support.weights import random_checkpoint

    settings = ModelSettings(
        name="deepfake-xception-test", version="0.1.0", input_size=SERVED_CROP_SIZE
    )
    return random_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt", settings)


@pytest.fixture(scope="session")
def model_store(served_checkpoint, served_split_file, tmp_path_factory) -> Path:
    """deepfake.mar (0.1.0, the shipped model config) and deepfake-v2.mar: the same weights
    with settings version 0.2.0, an int8 model calibrated on the small set's faces, TorchServe
    batching (`V2_BATCH`) and two inference paths timed at start (`V2_PATHS`)."""
    import dataclasses

    import yaml

    from deploy.archive import DEFAULT_CONFIG, build_archive
    from model.network import load_checkpoint, save_checkpoint

    store = tmp_path_factory.mktemp("model_store")
    build_archive(served_checkpoint, store)
    network, settings = load_checkpoint(served_checkpoint)
    second = served_checkpoint.parent / "second" / "best.pt"
    save_checkpoint(network, dataclasses.replace(settings, version="0.2.0"), second)
    config = yaml.safe_load(DEFAULT_CONFIG.read_text()) | V2_BATCH
    config["deepfake"] = {"engine": {"inference_path": V2_PATHS}}
    config_file = second.parent / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    build_archive(
        second,
        store,
        file_name="deepfake-v2",
        config_file=config_file,
        int8_split=served_split_file,
    )
    return store


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    """The shared TorchServe (see SECRETS); a test that changes it (workers, default version,
    keys) puts it back before it ends."""
    from support.bad_inputs import CORPUS_MAX_REQUEST_BYTES, SECRETS
    from support.torchserve import serving

    with serving(
        tmp_path_factory.mktemp("torchserve"),
        model_store,
        extra_env=SECRETS,
        load_models="deepfake.mar,deepfake-v2.mar",
        max_request_size=str(CORPUS_MAX_REQUEST_BYTES),
    ) as running:
        yield running
