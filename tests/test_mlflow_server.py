"""`make mlflow-server` for real on a free loopback port: a short training run logs to it over
HTTP, the run is read back, and `deploy.archive` packs the registered version from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import zipfile

import mlflow
import pytest

from deploy import archive
from model.network import file_sha256
from support.torchserve import REPO_ROOT, free_ports, wait_for_http
from training.train import main as train_main

pytestmark = pytest.mark.integration

SHORT_RUN = ["--input-size", "96", "--batch-size", "4", "--max-steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    [port] = free_ports(1)
    variables = {
        "MLFLOW_PORT": str(port),
        "MLFLOW_BACKEND_URI": f"sqlite:///{folder}/server.db",
        "MLFLOW_ARTIFACTS": str(folder / "artifacts"),
        "MLFLOW_WORKERS": "1",
    }
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed at teardown
    command = ["make", "--no-print-directory", "mlflow-server"]
    server = subprocess.Popen(
        [*command, *(f"{name}={value}" for name, value in variables.items())],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server, folder / "server.log", "mlflow server", 180)
        yield url, folder
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def trained_on_server(tracking_server, split_file, tmp_path_factory):
    url, _ = tracking_server
    work = tmp_path_factory.mktemp("client")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", url)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.chdir(work)  # anything written to a local ./mlruns would show up here
        arguments = ["--split", str(split_file), "--output-dir", "checkpoints", *SHORT_RUN]
        assert train_main([*arguments, "--epochs", "1", "--experiment", "shared"]) == 0
        yield url, work


def test_training_logs_the_run_and_its_artifacts_to_the_server(trained_on_server, tracking_server):
    url, work = trained_on_server
    _, server_folder = tracking_server
    client = mlflow.MlflowClient(url)
    [run] = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["input_size"] == "96"
    assert "val_video_auc" in run.data.metrics
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="checkpoint/best.pt", tracking_uri=url
    )
    assert file_sha256(downloaded) == file_sha256(work / "checkpoints" / "best.pt")
    stored = list((server_folder / "artifacts").rglob("best.pt"))
    assert len(stored) == 1  # the artifact went to the server's artifact root
    assert not (work / "mlruns").exists()


def test_archive_packs_the_registered_version_with_its_sha256(
    trained_on_server, tmp_path, monkeypatch, capsys
):
    url, _ = trained_on_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    [version] = mlflow.MlflowClient(url).search_model_versions("name='deepfake'")
    store = tmp_path / "store"
    status = archive.main(["--checkpoint", f"models:/deepfake/{version.version}",
                           "--model-store", str(store)])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    with zipfile.ZipFile(store / "deepfake.mar") as mar:
        info = json.loads(mar.read(archive.ARCHIVE_INFO))
        packed = mar.read(archive.WEIGHTS_NAME)
    registered = version.tags["sha256"]
    assert info["checkpoint_sha256"] == registered
    (tmp_path / "packed.pt").write_bytes(packed)
    assert file_sha256(tmp_path / "packed.pt") == registered
    assert info["checkpoint_source"] == f"models:/deepfake/{version.version}"
    assert info["registered_model"]["run_id"] == version.run_id


def test_archive_refuses_an_unknown_version_and_a_changed_artifact(
    trained_on_server, tracking_server, tmp_path, monkeypatch, capsys
):
    url, _ = trained_on_server
    _, server_folder = tracking_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    store = tmp_path / "store"
    assert archive.main(["--checkpoint", "models:/deepfake/99", "--model-store", str(store)]) == 1
    assert "models:/deepfake/99 not found in the registry" in capsys.readouterr().err
    [stored] = (server_folder / "artifacts").rglob("best.pt")
    original = stored.read_bytes()
    try:
        stored.write_bytes(original + b"tampered")
        assert (
            archive.main(["--checkpoint", "models:/deepfake/1", "--model-store", str(store)]) == 1
        )
        assert "the artifact changed after registration" in capsys.readouterr().err
    finally:
        stored.write_bytes(original)
    assert not (store / "deepfake.mar").exists()
