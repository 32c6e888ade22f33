"""training.extract_faces on real sample videos."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.tensors import crops_to_batch
from model.video import SamplingConfig
from training.extract_faces import (
    FACES_FILE,
    ExtractionConfig,
    extract_all,
    main,
    summary,
    video_jobs,
)

pytestmark = pytest.mark.integration


def test_every_video_gets_its_crops_and_record(extracted_images, small_video_dir):
    image_dir, outcomes = extracted_images
    assert len(outcomes) == 7 and not any(o.error for o in outcomes)
    record = json.loads((image_dir / "real" / "a_wolfgang_c1" / FACES_FILE).read_text())
    assert record["label"] == "real" and record["crop_size"] == 299
    assert [f["frame_index"] for f in record["frames"]] == [0, 20, 40, 60, 80, 100]
    for frame in record["frames"]:
        [face] = frame["faces"]
        crop = cv2.imread(str(image_dir / "real" / "a_wolfgang_c1" / face["file"]))
        assert crop.shape == (299, 299, 3)
        landmarks = np.array(face["landmarks"])
        assert landmarks.shape == (68, 2)
        # The face lies in its crop; the chin may reach just past a crop clipped by the frame.
        inside = ((landmarks >= 0) & (landmarks < 299)).all(axis=1)
        assert inside.mean() > 0.9 and landmarks.min() > -30 and landmarks.max() < 330
    no_face = next(o for o in outcomes if o.video_id == "a_noface_caminandes")
    assert no_face.frames == 5 and no_face.faces == 0


def test_training_crops_give_the_servers_tensors(extracted_images, small_video_dir):
    """PNG crops written for training and the server's in-memory crops are the same tensors."""
    image_dir, _ = extracted_images
    video = small_video_dir / "fake" / "a_fs_wolfgang_c1__grace_hopper.mp4"
    record = json.loads((image_dir / "fake" / video.stem / FACES_FILE).read_text())
    files = [face["file"] for frame in record["frames"] for face in frame["faces"]]
    training_crops = [
        cv2.cvtColor(cv2.imread(str(image_dir / "fake" / video.stem / f)), cv2.COLOR_BGR2RGB)
        for f in files
    ]
    settings = ModelSettings(input_size=160)  # training at 160 resizes from the 299 crops
    serving = extract_faces(
        video.read_bytes(),
        SamplingConfig(interval=20),
        make_detector(DetectorConfig()),
        ModelSettings(),
    )
    torch.testing.assert_close(
        crops_to_batch(training_crops, settings),
        crops_to_batch([face.crop for face in serving.faces], settings),
        rtol=0,
        atol=0,
    )


def test_a_second_run_skips_what_is_done_and_reports_unreadable_files(
    extracted_images, small_video_dir, tmp_path
):
    image_dir, _ = extracted_images
    (small_video_dir / "real" / "broken.mp4").write_text("not a video")
    try:
        jobs = video_jobs(small_video_dir, image_dir)
        outcomes = extract_all(jobs, ExtractionConfig(), workers=2, progress=False)
    finally:
        (small_video_dir / "real" / "broken.mp4").unlink()
    assert sum(o.skipped for o in outcomes) == 7
    [broken] = [o for o in outcomes if o.error]
    assert broken.video_id == "broken" and "not a video file" in broken.error
    assert not (image_dir / "real" / "broken").exists()
    assert "7 already done, 1 unreadable" in summary(outcomes)


def test_command_line_accepts_the_seeds_spellings(small_video_dir, tmp_path, capsys):
    fake_only = tmp_path / "videos" / "fake"
    fake_only.mkdir(parents=True)
    (fake_only / "clip.mp4").symlink_to(
        small_video_dir / "fake" / "a_fs_wolfgang_c1__grace_hopper.mp4"
    )
    arguments = ["--video_dir", str(tmp_path / "videos"), "--image_dir", str(tmp_path / "images")]
    assert main([*arguments, "--interval", "50", "--workers", "1", "--no-landmarks"]) == 0
    assert "1 videos (1 extracted" in capsys.readouterr().out
    record = json.loads((tmp_path / "images" / "fake" / "clip" / FACES_FILE).read_text())
    assert [f["frame_index"] for f in record["frames"]] == [0, 50, 100]
    assert "landmarks" not in record["frames"][0]["faces"][0]
