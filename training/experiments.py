"""MLflow tracking for training runs: the one module that talks to MLflow."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from model.errors import CheckpointError
from model.network import file_sha256, load_settings, settings_path

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's embedded default store
# models:/<name>/<version> or models:/<name>@<alias>
REGISTERED_MODEL_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$"
)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


@dataclass(frozen=True)
class TrackedRun:
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_figure(self, figure, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact, e.g. "plots/reliability.png"."""
        mlflow.log_figure(figure, artifact_file)


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


@dataclass(frozen=True)
class RegisteredCheckpoint:
    """A registered model version's checkpoint, downloaded and checked against its sha256 tag."""

    weights_path: Path
    name: str
    version: str
    run_id: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "sha256": self.sha256,
            "tracking_uri": tracking_uri(),
        }


def download_registered_checkpoint(model_uri: str, folder: Path) -> RegisteredCheckpoint:
    """Fetch the checkpoint of `models:/<name>/<version>` (or `@<alias>`) from the registry at
    MLFLOW_TRACKING_URI into `folder`; refuse it unless its sha256 is the one registered."""
    match = REGISTERED_MODEL_URI.match(model_uri)
    if not match:
        raise CheckpointError(
            f"{model_uri!r} is not models:/<name>/<version> or models:/<name>@<alias>"
        )
    client = mlflow.MlflowClient(tracking_uri())
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        else:
            version = client.get_model_version(match["name"], match["version"])
    except MlflowException as error:
        raise CheckpointError(
            f"{model_uri} not found in the registry at {tracking_uri()}: {error.message}"
        ) from error
    registered_sha = version.tags.get("sha256")
    if not registered_sha:
        raise CheckpointError(
            f"{model_uri} has no sha256 tag: register checkpoints with training.train"
        )
    downloaded = Path(mlflow.artifacts.download_artifacts(version.source, dst_path=str(folder)))
    weights = sorted(p for p in downloaded.glob("*.pt") if settings_path(p).is_file())
    if len(weights) != 1:
        raise CheckpointError(
            f"{model_uri}: expected one checkpoint (.pt + .json) at {version.source}, "
            f"found {[p.name for p in downloaded.iterdir()]}"
        )
    actual_sha = file_sha256(weights[0])
    if actual_sha != registered_sha:
        raise CheckpointError(
            f"{model_uri}: downloaded {weights[0].name} has sha256 {actual_sha}, but version "
            f"{version.version} was registered with {registered_sha}; the artifact changed "
            "after registration"
        )
    return RegisteredCheckpoint(
        weights[0], version.name, str(version.version), version.run_id, registered_sha
    )
