"""KServe: the InferenceService manifest checked by the KServe SDK's models (in the tools venv,
no cluster), the storage folder `make kserve-bundle` lays out, and TorchServe answering the v1
protocol with that folder's config."""

from __future__ import annotations

import base64
import subprocess
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

from deploy.archive import build_archive
from deploy.kserve.bundle import (
    BASE_CONFIG,
    MOUNT,
    build_bundle,
    main,
    pod_config,
    pod_settings,
)
from deploy.ts_config import read_properties
from model.network import ModelSettings, file_sha256
from support.torchserve import PORT_KEYS, serving
from support.weights import random_checkpoint

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "deploy" / "kserve" / "inferenceservice.yaml"
GPU_MANIFEST = REPO / "deploy" / "kserve" / "inferenceservice-gpu.yaml"
VALIDATE = REPO / "deploy" / "kserve" / "validate.py"
TOOLS_PYTHON = REPO / ".venv-tools" / "bin" / "python"
post = partial(requests.post, timeout=300)
# The harness sets these itself: free loopback ports for all five (gRPC's included: the pod's
# 7070/7071 are `make demo`'s), the test's own store and metrics file.
HARNESS_KEYS = {*PORT_KEYS, "model_store", "metrics_config"}


def _typo(manifest: dict) -> None:
    manifest["spec"]["predictor"]["minReplica"] = manifest["spec"]["predictor"].pop("minReplicas")


def _quoted_number(manifest: dict) -> None:
    manifest["spec"]["predictor"]["scaleTarget"] = "2"


def _port_as_text(manifest: dict) -> None:
    manifest["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"] = "eighty"


def _nameless_container(manifest: dict) -> None:
    del manifest["spec"]["predictor"]["containers"][0]["name"]


def _nested_typo(manifest: dict) -> None:
    probe = manifest["spec"]["predictor"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")


def _more_min_than_max(manifest: dict) -> None:
    manifest["spec"]["predictor"]["minReplicas"] = 5


def _wrong_kind(manifest: dict) -> None:
    manifest["kind"] = "InferenceServices"


BROKEN = {
    "typo": (_typo, "spec.predictor.minReplica: not a field"),
    "quoted_number": (_quoted_number, "spec.predictor.scaleTarget: '2' is read as 2"),
    "port_as_text": (_port_as_text, "the SDK refuses it: invalid literal for int()"),
    "nameless_container": (_nameless_container, "Invalid value for `name`, must not be `None`"),
    "nested_typo": (_nested_typo, "containers[0].readinessProbe.httpGett: not a field"),
    "min_above_max": (_more_min_than_max, "minReplicas is above maxReplicas"),
    "wrong_kind": (_wrong_kind, "kind is 'InferenceServices', expected 'InferenceService'"),
}


@pytest.fixture(scope="module")
def tools_python() -> Path:
    if not TOOLS_PYTHON.exists():
        pytest.fail(
            f"{TOOLS_PYTHON.relative_to(REPO)} is missing: `make tools` builds it "
            "(the KServe SDK, pinned in deploy/requirements-tools.txt)"
        )
    return TOOLS_PYTHON


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def verdicts(tools_python, manifest, tmp_path_factory) -> dict[str, str]:
    """validate.py's line for the shipped manifest ("shipped") and for each BROKEN copy, from
    one run of the tools venv (importing the SDK takes seconds)."""
    folder = tmp_path_factory.mktemp("manifests")
    paths = {"shipped": MANIFEST, "gpu": GPU_MANIFEST}
    for name, (breaks, _) in BROKEN.items():
        broken = yaml.safe_load(MANIFEST.read_text())
        breaks(broken)
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(broken, sort_keys=False))
    run = subprocess.run(
        [str(tools_python), str(VALIDATE), *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = run.stdout.splitlines()
    assert len(lines) == len(paths), run.stdout + run.stderr
    assert run.returncode == 1, run.stdout  # some are invalid
    return {name: line for name, line in zip(paths, lines, strict=True)}


def test_the_manifest_validates_against_the_kserve_sdk(verdicts):
    assert verdicts["shipped"].startswith(f"valid: {MANIFEST}: an InferenceService by the kserve")


def test_the_gpu_manifest_is_the_manifest_with_a_gpu_per_pod(verdicts):
    assert verdicts["gpu"].startswith(f"valid: {GPU_MANIFEST}: an InferenceService by the kserve")
    gpu = yaml.safe_load(GPU_MANIFEST.read_text())
    (container,) = gpu["spec"]["predictor"]["containers"]
    resources = container.pop("resources")
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert container.pop("env")[1:] == [{"name": "TS_NUMBER_OF_GPU", "value": "1"}]
    assert gpu["spec"]["predictor"].pop("tolerations")[0]["key"] == "nvidia.com/gpu"
    assert gpu["metadata"].pop("name") == "deepfake-gpu"
    cpu = yaml.safe_load(MANIFEST.read_text())
    (cpu_container,) = cpu["spec"]["predictor"]["containers"]
    del cpu_container["resources"], cpu_container["env"], cpu["metadata"]["name"]
    assert gpu == cpu  # everything else is the same service


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_typo_or_a_wrong_type_in_the_manifest_fails(verdicts, name):
    assert verdicts[name].startswith("invalid: "), verdicts[name]
    assert BROKEN[name][1] in verdicts[name]


def test_validate_exits_0_on_the_shipped_manifest(tools_python):
    run = subprocess.run(
        [str(tools_python), str(VALIDATE), str(MANIFEST)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_manifest_runs_torchserve_on_the_bundle_it_points_at(manifest):
    predictor = manifest["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # the name KServe gives STORAGE_URI to
    assert container["command"] == ["torchserve"]
    assert "--foreground" in container["args"]
    config = container["args"][container["args"].index("--ts-config") + 1]
    assert config == f"{MOUNT}/config/config.properties"
    assert [env["name"] for env in container["env"]] == ["STORAGE_URI"]
    port = urlparse(_pod_config_without_a_mar()["inference_address"]).port
    assert [p["containerPort"] for p in container["ports"]] == [port] == [8080]
    assert container["readinessProbe"]["httpGet"]["port"] == port
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]


def _pod_config_without_a_mar() -> dict[str, str]:
    return read_properties(pod_config(BASE_CONFIG.read_text(), pod_settings("deepfake.mar")))


@pytest.fixture(scope="module")
def mar(tmp_path_factory) -> Path:
    """deepfake.mar from random 160 px weights (version 0.3.0), built by `deploy.archive`."""
    settings = ModelSettings(name="deepfake-xception-test", version="0.3.0", input_size=160)
    checkpoint = random_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt", settings)
    return build_archive(checkpoint, tmp_path_factory.mktemp("model_store"))


@pytest.fixture(scope="module")
def storage(mar, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("storage")
    (folder / "config").mkdir()
    (folder / "config" / "stale.properties").write_text("left over\n")  # replaced, not kept
    build_bundle(mar, folder)
    return folder


def test_bundle_lays_out_the_kserve_storage_folder(mar, storage):
    files = sorted(str(path.relative_to(storage)) for path in storage.rglob("*") if path.is_file())
    assert files == ["config/config.properties", "model-store/deepfake.mar"]
    assert file_sha256(storage / "model-store" / "deepfake.mar") == file_sha256(mar)


def test_bundle_config_is_the_repository_config_with_the_pod_differences(storage):
    config = read_properties((storage / "config" / "config.properties").read_text())
    assert config["load_models"] == "deepfake.mar"
    assert config["model_store"] == f"{MOUNT}/model-store"
    assert config["inference_address"] == "http://0.0.0.0:8080"
    assert config["management_address"] == "http://127.0.0.1:8081"  # stays inside the pod
    assert config["disable_token_authorization"] == "true"
    assert config["enable_envvars_config"] == "false"  # the image's TS_* would bind 0.0.0.0
    base = read_properties(BASE_CONFIG.read_text())
    changed = {key for key in base if config[key] != base[key]}
    assert changed == {
        "inference_address",
        "metrics_address",
        "model_store",
        "allowed_urls",
        "disable_token_authorization",
        "enable_envvars_config",
    }
    assert set(config) == set(base)


def test_bundle_refuses_an_archive_for_another_model_name(tmp_path):
    settings = ModelSettings(name="other", version="0.1.0", input_size=96)
    checkpoint = random_checkpoint(tmp_path / "best.pt", settings)
    other = build_archive(checkpoint, tmp_path / "store", name="other")
    with pytest.raises(ValueError, match="serves model 'other', not 'deepfake'"):
        build_bundle(other, tmp_path / "storage")


def test_bundle_refuses_an_archive_that_does_not_match_its_sha256(mar, tmp_path):
    copy = tmp_path / "deepfake.mar"
    copy.write_bytes(mar.read_bytes())
    (tmp_path / "deepfake.mar.sha256").write_text("0" * 64 + "  deepfake.mar\n")
    with pytest.raises(ValueError, match=r"does not match deepfake\.mar\.sha256: rebuild it"):
        build_bundle(copy, tmp_path / "storage")


def test_bundle_without_an_archive_says_to_build_one(tmp_path, capsys):
    assert main(["--mar", str(tmp_path / "deepfake.mar"), "--output", str(tmp_path)]) == 1
    assert "run `make archive` first" in capsys.readouterr().err


@pytest.fixture(scope="module")
def video(sample_videos):
    return next(v for v in sample_videos if v.name == "a_fs_wolfgang_c1__grace_hopper.mp4")


@pytest.mark.serving
def test_torchserve_with_the_bundle_config_answers_kserve_v1_like_a_raw_upload(
    mar, storage, video, tmp_path_factory
):
    pod = read_properties((storage / "config" / "config.properties").read_text())
    overrides = {key: value for key, value in pod.items() if key not in HARNESS_KEYS}
    encoded = base64.b64encode(video.path.read_bytes()).decode("ascii")
    with serving(
        tmp_path_factory.mktemp("torchserve-kserve"), storage / "model-store", **overrides
    ) as server:
        raw_report = server.client.predict(video.path)
        v1 = f"{server.client.address.inference_url}/v1/models/deepfake"
        response = post(f"{v1}:predict", json={"instances": [{"data": encoded}]})
        frames = post(f"{v1}:predict", json={"instances": [{"data": encoded, "frames": 4}]})
        explained = post(
            f"{v1}:explain", json={"instances": [{"data": encoded, "explain_faces": 1}]}
        )
        bad = post(f"{v1}:predict", json={"instances": [{"data": "not base64!"}]})
        two = post(f"{v1}:predict", json={"instances": [{"data": encoded}] * 2})
        after = post(f"{v1}:predict", json={"instances": [{"data": encoded}]})

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["predictions"] and len(body["predictions"]) == 1
    (report,) = body["predictions"]
    assert report["fake_probability"] == pytest.approx(raw_report["fake_probability"], abs=1e-6)
    report.pop("timing_ms"), raw_report.pop("timing_ms")
    assert report == raw_report

    assert frames.json()["predictions"][0]["frames_analyzed"] == 4  # options in the instance
    (explanation,) = explained.json()["explanations"]
    assert len(explanation["explanations"]) == 1 and explanation["label"] == report["label"]

    assert bad.status_code == 400, bad.text
    assert bad.json()["error"] == "invalid_base64"
    assert "not valid base64" in bad.json()["message"]
    assert two.status_code == 400 and two.json()["error"] == "invalid_v1_request"
    assert "got 2 instances" in two.json()["message"]
    assert after.status_code == 200  # the worker is still serving
