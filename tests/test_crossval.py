"""Cross-validation by identity: folds, pooled out-of-fold metrics with intervals, one real run."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.crossval import main
from training.data_dir import load_split
from training.folds import UNUSED, fold_split, parse_folds
from training.metrics import bootstrap_interval, rank_auc

pytestmark = pytest.mark.integration


def test_folds_hold_out_whole_identities(split_file):
    split = load_split(split_file)
    assert parse_folds("a; b ;c,d") == [["a"], ["b"], ["c", "d"]]
    fold = fold_split(split, ["pexels_woman"])
    sides = {v["video_id"]: v["split"] for v in fold["videos"]}
    assert sides == {
        "a_wolfgang_c1": "val",
        "a_fs_wolfgang_c1__grace_hopper": "val",  # held out; grace_hopper's face pasted in
        "a_still_grace_hopper": "train",
        "a_still_astronaut": "train",
        "a_noface_caminandes": "train",
        "a_fs_still_grace_hopper__astronaut": "train",  # eileen_collins's face pasted in
        "a_fs_still_astronaut__grace_hopper": UNUSED,  # grace_hopper's, as in a held-out swap
    }
    with pytest.raises(ValueError, match="nobody"):
        fold_split(split, ["nobody"])
    assert main(["--split", str(split_file), "--folds", "pexels_woman;nobody"]) == 2


def test_bootstrap_interval_brackets_the_estimate_and_needs_both_classes():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 30)
    scores = np.concatenate([rng.normal(0, 1, 30), rng.normal(1, 1, 30)])
    low, high = bootstrap_interval(labels, scores, rank_auc)
    assert low < roc_auc_score(labels, scores) < high and low >= 0.0 and high <= 1.0
    # Frames of one video share its offset: resampling frames as if independent understates
    # the uncertainty; resampling videos does not.
    videos = np.repeat(np.arange(12), 10)
    frame_labels = (videos >= 6).astype(int)
    offsets = rng.normal(0, 1, 12)
    frame_scores = frame_labels + offsets[videos] + rng.normal(0, 0.2, len(videos))
    naive = bootstrap_interval(frame_labels, frame_scores, rank_auc)
    clustered = bootstrap_interval(frame_labels, frame_scores, rank_auc, clusters=videos)
    assert clustered[1] - clustered[0] > 1.5 * (naive[1] - naive[0])
    assert np.isnan(bootstrap_interval([0, 0], [0.1, 0.2], rank_auc)).all()


def test_a_crossval_run_scores_every_held_out_video(split_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "crossval.json"
    short = ["--input-size", "96", "--batch-size", "4", "--max-steps-per-epoch", "1"]
    folds = "pexels_woman;grace_hopper,eileen_collins"
    arguments = ["--split", str(split_file), "--epochs", "1", "--fake-source", "sbi", *short]
    work_dir = tmp_path / "work"
    fold_args = ["--folds", folds, "--work-dir", str(work_dir)]
    assert main([*arguments, *fold_args, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    split = load_split(split_file)
    with_faces = {v["video_id"] for v in split["videos"] if v["crops"]}
    assert set(report["videos"]) == with_faces  # every video with faces scored out of fold
    metrics = report["metrics"]
    for name in ("video_auc", "frame_auc", "video_eer"):
        assert metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"], name
    assert metrics["real_videos"] + metrics["fake_videos"] == len(with_faces)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("deepfake-serve-crossval")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # two folds' training runs and the summary
    assert any("video_auc_low" in run.data.metrics for run in runs)
    # Folds are never calibrated on the held-out people they are scored on; the summary
    # measures calibration cross-fitted (a temperature from the other folds).
    folds_trained = [run for run in runs if "train_loss" in run.data.metrics]
    assert folds_trained and not any(
        "calibration_temperature" in r.data.metrics for r in folds_trained
    )
    assert {"face_ece", "face_ece_calibrated"} <= set(metrics)
    # Each fold is served with the temperature fitted on the other fold's faces.
    assert len(report["fold_temperatures"]) == 2 and report["protocol"] == 2
    [summary] = [run for run in runs if "video_auc_low" in run.data.metrics]
    plots = {a.path for a in client.list_artifacts(summary.info.run_id, "plots")}
    assert plots == {"plots/reliability.png"}
    # Each held-out video was also judged whole by its fold's checkpoint, as served.
    groups = {group for fold in parse_folds(folds) for group in fold}
    served = report["served"]
    assert set(served) == {v["video_id"] for v in split["videos"] if v["group"] in groups}
    assert len(served) == metrics["served_videos"]
    for video in served.values():
        assert 0.0 <= video["fake_probability"] <= 1.0 and 0.0 <= video["mean_probability"] <= 1.0
        assert video["label"] in (0, 1)
    for name in (
        "served_video_auc",
        "served_mean_video_auc",
        "served_video_auc_faceswap-delaunay-poisson",
        "served_video_auc_crf23",
        "paired_rate",
        "false_alarm_rate",
    ):
        assert metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"], name
    # Every swap of a held-out group was made on a held-out real clip: all are paired.
    assert metrics["paired_swaps"] == sum(video["label"] for video in served.values())

    # A serving setting measured on the same fold checkpoints, with no training: every 20th
    # frame (no 15-frame minimum) analyses fewer frames of these 4 s clips.
    checkpoints = sorted(work_dir.glob("fold*/checkpoints/best.pt"))
    trained = [path.stat().st_mtime_ns for path in checkpoints]
    settings = tmp_path / "every-20th.yaml"
    settings.write_text("deepfake:\n  sampling: {min_frames: 1}\n")
    again = tmp_path / "every-20th.json"
    reuse = [*fold_args, "--reuse-folds", "--served-config", str(settings), "--output", str(again)]
    assert main([*arguments, *reuse]) == 0
    assert [path.stat().st_mtime_ns for path in checkpoints] == trained  # not retrained
    judged_again = json.loads(again.read_text())
    assert judged_again["served_settings"] == {"sampling": {"min_frames": 1}}
    assert judged_again["videos"] == report["videos"]  # the same checkpoints' crop scores
    assert set(judged_again["served"]) == set(served)

    def faces(report):  # faces of people seen twice or more, per video
        return {v: sum(map(len, report["served"][v]["person_scores"])) for v in served}

    assert all(faces(judged_again)[v] <= faces(report)[v] for v in served)
    assert faces(judged_again) != faces(report)
    # Reusing a work dir trained on other folds is refused before anything is judged.
    assert main([*arguments, "--folds", "grace_hopper", "--work-dir", str(work_dir),
                 "--reuse-folds", "--output", str(again)]) == 2  # fmt: skip


def test_the_bootstraps_rank_auc_is_sklearns_roc_auc_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 10, 40) / 10  # many ties
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
