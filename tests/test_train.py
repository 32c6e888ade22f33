"""A short real training run against a real MLflow store, read back through the client."""

from __future__ import annotations

import mlflow
import pytest
import torch

from model.network import load_checkpoint
from training.train import main

SHORT_RUN = ["--input-size", "96", "--batch-size", "4", "--max-steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.chdir(folder)  # the default artifact root is ./mlruns
        yield uri


@pytest.fixture(scope="module")
def trained(tracking_uri, split_file, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("checkpoints")
    arguments = ["--split", str(split_file), "--output-dir", str(output_dir), *SHORT_RUN]
    assert main([*arguments, "--epochs", "1", "--version", "0.0.1"]) == 0
    return output_dir, arguments


def _only_run(tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("deepfake-serve")
    [run] = client.search_runs([experiment.experiment_id])
    return client, run


def test_run_has_params_metrics_artifacts_and_a_registered_version(trained, tracking_uri):
    output_dir, _ = trained
    client, run = _only_run(tracking_uri)
    assert run.data.params["input_size"] == "96"
    assert run.data.params["fake_source"] == "both"
    assert run.data.params["precision_used"] in ("fp32", "bf16")
    for metric in (
        "train_loss",
        "val_loss",
        "val_frame_auc",
        "val_video_auc",
        "val_video_accuracy",
        "val_video_log_loss",
        "val_video_eer",
    ):
        assert metric in run.data.metrics, metric
    artifacts = {
        a.path
        for folder in ("checkpoint", "plots", "split")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {
        "checkpoint/best.pt",
        "checkpoint/best.json",
        "plots/roc.png",
        "plots/confusion.png",
        "split/split.json",
    }
    [version] = client.search_model_versions("name='deepfake'")
    assert version.run_id == run.info.run_id and version.tags["model_version"] == "0.0.1"
    network, settings = load_checkpoint(output_dir / "best.pt")
    assert settings.input_size == 96 and settings.version == "0.0.1"
    assert not network.training


def test_resume_continues_the_same_run(trained, tracking_uri):
    output_dir, arguments = trained
    before = torch.load(output_dir / "last_state.pt", weights_only=True)
    assert before["epoch"] == 0
    assert main([*arguments, "--epochs", "2", "--resume"]) == 0
    client, run = _only_run(tracking_uri)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert torch.load(output_dir / "last_state.pt", weights_only=True)["epoch"] == 1
    versions = client.search_model_versions("name='deepfake'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_yaml_config_is_read_and_checked(tmp_path):
    from training.train import config_from_args, get_args_parser

    config_file = tmp_path / "train.yaml"
    config_file.write_text("epochs: 7\ninput_size: 224\nfake_source: sbi\n")
    parsed = get_args_parser().parse_args(["--config", str(config_file), "--epochs", "9"])
    config = config_from_args(parsed)
    assert (config.epochs, config.input_size, config.fake_source) == (9, 224, "sbi")
    config_file.write_text("epochs: 7\nlearning_rate: 0.1\n")
    with pytest.raises(SystemExit, match="learning_rate"):
        config_from_args(get_args_parser().parse_args(["--config", str(config_file)]))
