"""MLflow tracking for training runs: the one module that talks to MLflow."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from model.network import file_sha256, load_settings, settings_path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's embedded default store


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


@dataclass(frozen=True)
class TrackedRun:
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


@contextmanager
def start_tracked_run(
    experiment: str, run_id: str | None, params: dict | None
) -> Iterator[TrackedRun]:
    """Start (or, with `run_id`, reopen) a run in `experiment` and log `params` once."""
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=run_id) as run:
        if params:
            mlflow.log_params({k: "" if v is None else v for k, v in params.items()})
        yield TrackedRun(run.info.run_id)


def log_checkpoint_and_register(
    run: TrackedRun, weights_path: Path, split_path: Path, registered_model: str | None
) -> str | None:
    """Log the checkpoint (weights + settings) and split file; register the checkpoint as a new
    version of `registered_model`. Returns the registry version, or None if not registered."""
    run.log_artifact(weights_path, "checkpoint")
    run.log_artifact(settings_path(weights_path), "checkpoint")
    run.log_artifact(split_path, "split")
    if not registered_model:
        return None
    client = mlflow.MlflowClient()
    try:
        client.create_registered_model(registered_model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    settings = load_settings(weights_path)
    # The checkpoint is our own two-file format, not an MLflow flavour, so the version is made
    # from the run's artifact folder directly (mlflow.register_model needs a logged model).
    version = client.create_model_version(
        registered_model,
        source=mlflow.get_artifact_uri("checkpoint"),
        run_id=run.run_id,
        tags={"model_version": settings.version, "sha256": file_sha256(weights_path)},
    )
    return version.version
