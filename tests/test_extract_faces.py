"""training.extract_faces on real sample videos."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.conftest import TRAINING_CROP_SIZE
from training.extract_faces import (
    FACES_FILE,
    ExtractionConfig,
    extract_all,
    main,
    summary,
    video_jobs,
)

pytestmark = pytest.mark.integration

SAMPLE_FAKE = "a_fs_wolfgang_c1__grace_hopper.mp4"


def test_every_video_gets_its_crops_and_record(extracted_images, small_video_dir):
    image_dir, outcomes = extracted_images
    assert len(outcomes) == 7 and not any(o.error for o in outcomes)
    record = json.loads((image_dir / "real" / "a_wolfgang_c1" / FACES_FILE).read_text())
    size = TRAINING_CROP_SIZE
    assert record["label"] == "real" and (record["crop_size"], record["crop_scale"]) == (size, 1.3)
    assert [f["frame_index"] for f in record["frames"]] == [0, 20, 40, 60, 80, 100]
    for frame in record["frames"]:
        [face] = frame["faces"]
        crop = cv2.imread(str(image_dir / "real" / "a_wolfgang_c1" / face["file"]))
        assert crop.shape == (size, size, 3)
        landmarks = np.array(face["landmarks"])
        assert landmarks.shape == (68, 2)
        # The face lies in its crop; the chin may reach just past a crop clipped by the frame.
        inside = ((landmarks >= 0) & (landmarks < size)).all(axis=1)
        assert inside.mean() > 0.9
        assert landmarks.min() > -0.1 * size and landmarks.max() < 1.1 * size
    no_face = next(o for o in outcomes if o.video_id == "a_noface_caminandes")
    assert no_face.frames == 5 and no_face.faces == 0


def test_a_second_run_skips_what_is_done_and_reports_unreadable_files(
    extracted_images, small_video_dir, tmp_path
):
    image_dir, _ = extracted_images
    (small_video_dir / "real" / "broken.mp4").write_text("not a video")
    try:
        jobs = video_jobs([small_video_dir], image_dir)
        config = ExtractionConfig(crop_size=TRAINING_CROP_SIZE)
        outcomes = extract_all(jobs, config, workers=2, progress=False)
    finally:
        (small_video_dir / "real" / "broken.mp4").unlink()
    assert sum(o.skipped for o in outcomes) == 7
    [broken] = [o for o in outcomes if o.error]
    assert broken.video_id == "broken" and "not a video file" in broken.error
    assert not (image_dir / "real" / "broken").exists()
    assert "7 already done, 1 unreadable" in summary(outcomes)


# A caller that ran torch's threads first (trained, scored), then extracted with workers: a
# forked worker hung for good in the detector's load_state_dict; the pool now spawns them.
_AFTER_TRAINING = """
import sys
from pathlib import Path

import torch

from model.network import ModelSettings, build_model
from model.video import SamplingConfig
from training.extract_faces import ExtractionConfig, extract_all, video_jobs

if __name__ == "__main__":  # the workers are spawned: they import this file again
    network = build_model(ModelSettings(input_size=96)).train()
    for _ in range(2):
        network(torch.randn(4, 3, 96, 96)).sum().backward()
    jobs = video_jobs([Path(sys.argv[1])], Path(sys.argv[2]))[:4]
    config = ExtractionConfig(sampling=SamplingConfig(num_frames=1), crop_size=96)
    outcomes = extract_all(jobs, config, 2, progress=False)
    print(sum(o.faces for o in outcomes), "faces")
"""


def test_workers_start_cleanly_after_the_caller_ran_torch(small_video_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "after_training.py"
    script.write_text(_AFTER_TRAINING)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(script), str(small_video_dir), str(tmp_path / "images")],
        capture_output=True,
        text=True,
        timeout=120,  # a hung worker never returns (it passes in seconds): the timeout fails it
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-2]) > 0


def _video_folder(folder, label, name, sample):
    (folder / label).mkdir(parents=True, exist_ok=True)
    (folder / label / name).symlink_to(sample)
    return folder


def test_command_line_accepts_the_seeds_spellings_and_several_folders(
    small_video_dir, tmp_path, capsys
):
    fake_only = _video_folder(
        tmp_path / "videos", "fake", "clip.mp4", small_video_dir / "fake" / SAMPLE_FAKE
    )
    real_only = _video_folder(
        tmp_path / "more", "real", "other.mp4", small_video_dir / "real" / "a_still_astronaut.mp4"
    )
    arguments = ["--video-dirs", str(fake_only), "--video-dirs", str(real_only)]
    arguments += ["--image-dir", str(tmp_path / "images"), "--crop-size", "80"]
    assert main([*arguments, "--interval", "50", "--workers", "1", "--no-landmarks"]) == 0
    assert "2 videos (2 extracted" in capsys.readouterr().out
    record = json.loads((tmp_path / "images" / "fake" / "clip" / FACES_FILE).read_text())
    assert [f["frame_index"] for f in record["frames"]] == [0, 50, 100]
    assert "landmarks" not in record["frames"][0]["faces"][0]
    assert record["crop_size"] == 80
    assert (tmp_path / "images" / "real" / "other" / FACES_FILE).is_file()


def test_a_video_id_in_two_folders_or_a_missing_folder_is_an_error(
    small_video_dir, tmp_path, capsys
):
    sample = small_video_dir / "fake" / SAMPLE_FAKE
    first = _video_folder(tmp_path / "first", "fake", "clip.mp4", sample)
    second = _video_folder(tmp_path / "second", "real", "clip.mkv", sample)
    with pytest.raises(ValueError, match=r"video id 'clip' is both \S*first/fake/clip.mp4 and "):
        video_jobs([first, second], tmp_path / "images")
    with pytest.raises(ValueError, match="missing does not exist"):
        video_jobs([first, tmp_path / "missing"], tmp_path / "images")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no real/ or fake/"):
        video_jobs([tmp_path / "empty"], tmp_path / "images")
    arguments = ["--video-dirs", str(first), str(second)]
    assert main([*arguments, "--image-dir", str(tmp_path / "images")]) == 1
    assert "second/real/clip.mkv: video ids must be unique" in capsys.readouterr().err
    assert not (tmp_path / "images").exists()
