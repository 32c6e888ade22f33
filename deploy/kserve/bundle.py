"""Lay out the storage folder KServe copies into every pod's /mnt/models (`make kserve-bundle`):

    python -m deploy.kserve.bundle [--mar model_store/deepfake.mar] [--output deploy/kserve/storage]

    storage/config/config.properties   TorchServe's settings inside a pod
    storage/model-store/deepfake.mar   the archive `make archive` built, copied and checked

The config is the repository's `config.properties` with the pod's differences (`pod_settings`):
TorchServe listens on the container's port 8080 (its `/v1/models/deepfake:predict` route, the
KServe v1 protocol, reaches the handler like `/predictions/deepfake`), loads the archive from
the mounted store, ignores the image's TS_* variables, and leaves authorization to the
cluster's ingress.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

from deploy.ts_config import read_properties
from model.network import file_sha256

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "config.properties"
DEFAULT_OUTPUT = REPO / "deploy" / "kserve" / "storage"
MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storage folder in a pod
MODEL_NAME = "deepfake"


def check_model_name(mar: Path) -> None:
    """Refuse an archive that would not answer at /v1/models/deepfake."""
    with zipfile.ZipFile(mar) as archive:
        name = json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]
    if name != MODEL_NAME:
        raise ValueError(f"{mar} serves model {name!r}, not {MODEL_NAME!r}")


def pod_settings(mar_name: str) -> dict[str, tuple[str, str]]:
    """What a pod changes in config.properties: key -> (value, why)."""
    return {
        "inference_address": ("http://0.0.0.0:8080", "KServe routes requests to port 8080"),
        "metrics_address": ("http://0.0.0.0:8082", "scraped by the cluster's Prometheus"),
        "model_store": (f"{MOUNT}/model-store", "KServe's storage initializer puts it there"),
        "load_models": (mar_name, "the archive make kserve-bundle copied"),
        "allowed_urls": (f"file://{MOUNT}/model-store/.*", "the pod's model store"),
        "enable_envvars_config": (
            "false",
            "the image's TS_* variables (Dockerfile) must not override these addresses",
        ),
        "disable_token_authorization": (
            "true",
            "each replica would write its own keys; the cluster's ingress authorizes instead",
        ),
    }


def pod_config(base: str, settings: Mapping[str, tuple[str, str]]) -> str:
    """The base config.properties with `settings` applied, each changed key with its reason."""
    lines = [
        "# TorchServe inside a KServe pod: written by `make kserve-bundle` from the repository's",
        "# config.properties; the pod's differences carry a comment. Edit those files, not this.",
    ]
    merged = {**read_properties(base), **{key: value for key, (value, _) in settings.items()}}
    for key, value in merged.items():
        if key in settings:
            lines.append(f"# pod: {settings[key][1]}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def build_bundle(mar: Path, output: Path, base_config: Path = BASE_CONFIG) -> Path:
    """Write `output/config/config.properties` and `output/model-store/<mar>` (replacing what
    was there); return the copied archive. Refuses an archive whose recorded sha256 differs."""
    sha256 = file_sha256(mar)
    recorded = mar.with_name(mar.name + ".sha256")
    if recorded.exists() and recorded.read_text().split()[0] != sha256:
        raise ValueError(f"{mar} does not match {recorded.name}: rebuild it with `make archive`")
    check_model_name(mar)
    for folder in ("config", "model-store"):
        shutil.rmtree(output / folder, ignore_errors=True)
        (output / folder).mkdir(parents=True)
    copied = output / "model-store" / mar.name
    shutil.copyfile(mar, copied)
    if file_sha256(copied) != sha256:
        raise OSError(f"copying {mar} to {copied} changed its bytes")
    settings = pod_settings(mar.name)
    (output / "config" / "config.properties").write_text(
        pod_config(base_config.read_text(), settings)
    )
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mar", type=Path, default=REPO / "model_store" / f"{MODEL_NAME}.mar")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if not args.mar.exists():
        print(f"kserve-bundle: {args.mar} is missing: run `make archive` first", file=sys.stderr)
        return 1
    copied = build_bundle(args.mar, args.output)
    print(f"kserve-bundle: {args.output}/config/config.properties")
    print(f"kserve-bundle: {copied} (sha256 {file_sha256(copied)})")
    print(f"kserve-bundle: upload the contents of {args.output} to the STORAGE_URI location")
    return 0


if __name__ == "__main__":
    sys.exit(main())
