"""Pack a checkpoint, the model/ code, the handler and its config into a TorchServe .mar.

    python -m deploy.archive --checkpoint checkpoints/best.pt [--model-store model_store]
    python -m deploy.archive --checkpoint models:/deepfake/3   # a registered MLflow version

The archive holds `checkpoint.pt` + `checkpoint.json` (the checkpoint format of
model/network.py), `archive.json` (the weights' sha256, the settings, the git commit), what a
worker imports (the `protocol`, `model` and `handler` packages; nothing a client, a tool or
training needs) and `model-config.yaml`. Its version is the checkpoint's
settings version. `<name>.mar.sha256` is written beside it (`sha256sum -c` format).
A registered version is downloaded from the registry at MLFLOW_TRACKING_URI and packed only if
its sha256 is the one registered, so what was evaluated is what gets served.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import yaml

from model.config import load_config
from model.errors import CheckpointError
from model.network import file_sha256, load_checkpoint, settings_path
from model.runtime import INT8_MODEL_NAME
from protocol.wire import ARCHIVE_INFO, MODEL_NAME, write_archive_info

REPO = Path(__file__).resolve().parent.parent
HANDLER = REPO / "handler" / "deepfake_handler.py"
DEFAULT_CONFIG = REPO / "handler" / "model-config.yaml"
PACKAGES = ("protocol", "model", "handler")  # what the worker imports, and nothing else
WEIGHTS_NAME = "checkpoint.pt"


def build_archive(
    checkpoint: Path,
    model_store: Path,
    name: str = MODEL_NAME,
    config_file: Path = DEFAULT_CONFIG,
    file_name: str | None = None,
    int8_split: Path | None = None,
    registered: dict[str, str] | None = None,
) -> Path:
    """Write `model_store/<file_name>.mar` (default: `<name>.mar`; one already there is replaced
    in one rename, so a running server never sees half a file) and its .sha256; return it.
    With `int8_split` (a training split.json) an int8 OpenVINO model calibrated and checked on
    it goes in too, when the check accepts it (`training.quantize`). `registered` (the registry
    version it came from) is recorded in archive.json."""
    _, settings = load_checkpoint(checkpoint)  # refuse a checkpoint the handler could not load
    load_config(yaml.safe_load(config_file.read_text()))  # and a bad config
    model_store.mkdir(parents=True, exist_ok=True)
    # Staged inside the store so the final rename stays on one file system (atomic).
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=model_store) as staging_dir:
        staging = Path(staging_dir)
        weights = staging / WEIGHTS_NAME
        shutil.copyfile(checkpoint, weights)
        shutil.copyfile(settings_path(checkpoint), settings_path(weights))
        info = {
            "name": name,
            "checkpoint_sha256": file_sha256(weights),
            "checkpoint_source": f"models:/{registered['name']}/{registered['version']}"
            if registered
            else str(checkpoint),
            "settings": asdict(settings),
            "git_commit": _git_commit(),
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if registered:
            info["registered_model"] = registered
        extra = [settings_path(weights), staging / ARCHIVE_INFO]
        if int8_split is not None:
            info["int8"], int8_files = _int8_model(checkpoint, int8_split, staging / "int8")
            extra.extend(int8_files)
        write_archive_info(staging, info)
        code = staging / "code"  # the archiver copies a folder's contents to the archive root
        for package in PACKAGES:
            (code / package).mkdir(parents=True)
            for source in sorted((REPO / package).glob("*.py")):
                shutil.copyfile(source, code / package / source.name)
        extra.append(code)
        subprocess.run(
            [
                str(Path(sys.executable).parent / "torch-model-archiver"),
                "--model-name", name,
                "--version", settings.version,
                "--serialized-file", str(weights),
                "--handler", str(HANDLER),
                "--extra-files", ",".join(str(path) for path in extra),
                "--config-file", str(config_file),
                "--export-path", str(staging),
            ],
            check=True,
        )  # fmt: skip
        archive = model_store / f"{file_name or name}.mar"
        os.replace(staging / f"{name}.mar", archive)
    Path(f"{archive}.sha256").write_text(f"{file_sha256(archive)}  {archive.name}\n")
    return archive


def _int8_model(checkpoint: Path, split: Path, folder: Path) -> tuple[dict, list[Path]]:
    """(archive.json's `int8` record, files to pack): the files only when the check passed."""
    from training.quantize import build_int8  # NNCF and training code: archive time only

    check = build_int8(checkpoint, split, folder)
    record = {**check.as_dict(), "split": str(split)}
    if not check.accepted:
        print(f"archive: int8 model left out: {check.reason}", file=sys.stderr)
        return record, []
    files = [folder / INT8_MODEL_NAME, (folder / INT8_MODEL_NAME).with_suffix(".bin")]
    record["sha256"] = {path.name: file_sha256(path) for path in files}
    return record, files


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        default="checkpoints/best.pt",
        help="checkpoint file, or a registered version: models:/deepfake/<version> (or @alias) "
        "from the MLflow registry at MLFLOW_TRACKING_URI",
    )
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--name", default=MODEL_NAME)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--file-name", help="archive file name without .mar (default: --name), e.g. deepfake-v2"
    )
    parser.add_argument(
        "--int8-split",
        type=Path,
        help="training split.json: add an int8 model calibrated on its train faces, if its "
        "validation check passes (openvino-int8 path)",
    )
    args = parser.parse_args(argv)
    build = partial(
        build_archive,
        model_store=args.model_store,
        name=args.name,
        config_file=args.config,
        file_name=args.file_name,
        int8_split=args.int8_split,
    )
    try:
        if args.checkpoint.startswith("models:/"):
            archive = _archive_registered(args.checkpoint, build)
        else:
            archive = build(Path(args.checkpoint))
    except CheckpointError as error:
        print(f"archive: {error}", file=sys.stderr)
        return 1
    print(f"archive: {archive} sha256 {file_sha256(archive)}")
    return 0


def _archive_registered(model_uri: str, build) -> Path:
    from training.experiments import download_registered_checkpoint  # MLflow: archive time only

    with tempfile.TemporaryDirectory(prefix="registered-") as folder:
        registered = download_registered_checkpoint(model_uri, Path(folder))
        print(f"archive: {model_uri} is run {registered.run_id}, sha256 {registered.sha256}")
        return build(registered.weights_path, registered=registered.as_dict())


if __name__ == "__main__":
    sys.exit(main())
