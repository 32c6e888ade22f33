"""training.evaluate and training.infer with a checkpoint trained here on the sample videos."""

from __future__ import annotations

import csv

import pytest
import torch

from model.network import ModelSettings, build_model, save_checkpoint
from training import evaluate, infer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    torch.manual_seed(0)
    settings = ModelSettings(input_size=96)
    save_checkpoint(build_model(settings).eval(), settings, path)
    return path


def test_evaluate_a_folder_with_real_and_fake(checkpoint, small_video_dir, tmp_path, capsys):
    (small_video_dir / "fake" / "unreadable.mp4").write_text("not a video")
    try:
        exit_code = evaluate.main(
            [
                "--checkpoint",
                str(checkpoint),
                "--videos",
                str(small_video_dir),
                "--csv",
                str(tmp_path / "scores.csv"),
                "--no-mlflow",
                "--interval",
                "40",
            ]
        )
    finally:
        (small_video_dir / "fake" / "unreadable.mp4").unlink()
    assert exit_code == 0
    output = capsys.readouterr().out
    last = output.strip().splitlines()[-1]
    assert last.startswith("evaluate: video AUC ")
    assert last.endswith("videos 7 (no face 1)")
    assert "unreadable fake/unreadable.mp4: not a video file" in output
    with open(tmp_path / "scores.csv", newline="") as file:
        rows = {row["video"]: row for row in csv.DictReader(file)}
    assert len(rows) == 8
    assert rows["real/a_noface_caminandes.mp4"]["note"] == "no_face (counted as 0.5)"
    assert 0 <= float(rows["fake/a_fs_wolfgang_c1__grace_hopper.mp4"]["fake_probability"]) <= 1


def test_evaluate_a_split_file_and_log_to_mlflow(
    checkpoint, split_file, tmp_path, monkeypatch, capsys
):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(checkpoint),
                "--videos",
                str(split_file),
                "--split-name",
                "train",
                "--csv",
                "scores.csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("evaluate: video AUC")
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("deepfake-serve-evaluation")
    [run] = client.search_runs([experiment.experiment_id])
    assert "video_auc" in run.data.metrics and "frame_auc" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")] == [
        "evaluation/scores.csv"
    ]


def test_infer_writes_one_line_per_file_and_one_per_person(checkpoint, small_video_dir, tmp_path):
    folder = tmp_path / "infer"
    folder.mkdir()
    (folder / "7.mp4").symlink_to(small_video_dir / "fake" / "a_fs_wolfgang_c1__grace_hopper.mp4")
    (folder / "no face here.mp4").symlink_to(small_video_dir / "real" / "a_noface_caminandes.mp4")
    (folder / "notes.txt").write_text("not a video")
    results = tmp_path / "results.txt"
    assert (
        infer.main(
            ["--video-dir", str(folder), "--output", str(results), "--checkpoint", str(checkpoint)]
        )
        == 0
    )
    lines = results.read_text().splitlines()
    assert len(lines) == 4
    name, probability, label = lines[0].rsplit(" ", 2)
    assert (
        name == "7.mp4" and label in ("fake", "real", "uncertain") and 0 <= float(probability) <= 1
    )
    assert lines[1] == f"7.mp4#person-1 {probability} {label}"  # one person: the video's verdict
    assert lines[2] == "no face here.mp4 no_face no_face"
    assert lines[3].startswith("notes.txt error: not a video file")


def test_sub_folders_of_fake_are_reported_per_method(checkpoint, small_video_dir, tmp_path, capsys):
    layout = {
        "real/a.mp4": "real/a_wolfgang_c1.mp4",
        "real/b.mp4": "real/a_still_grace_hopper.mp4",
        "fake/FaceSwap/c.mp4": "fake/a_fs_wolfgang_c1__grace_hopper.mp4",
        "fake/Other/d.mp4": "fake/a_fs_still_grace_hopper__astronaut.mp4",
    }
    for link, target in layout.items():
        (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / link).symlink_to(small_video_dir / target)
    arguments = ["--checkpoint", str(checkpoint), "--videos", str(tmp_path), "--no-mlflow"]
    assert evaluate.main([*arguments, "--csv", str(tmp_path / "s.csv"), "--interval", "50"]) == 0
    output = capsys.readouterr().out
    assert "FaceSwap_video_auc:" in output and "Other_video_auc:" in output
    with open(tmp_path / "s.csv", newline="") as file:
        methods = {row["video"]: row["method"] for row in csv.DictReader(file)}
    assert methods["fake/FaceSwap/c.mp4"] == "FaceSwap" and methods["real/a.mp4"] == "real"
