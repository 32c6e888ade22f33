"""The Dockerfile without a Docker engine: hadolint (pinned installs, no root user), the pins
it installs, its build context, its health check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from docker.utils.build import exclude_paths

from support.torchserve import REPO_ROOT, free_ports

DOCKERFILE = REPO_ROOT / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
HADOLINT = Path(sys.executable).parent / "hadolint"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def pinned(path: Path) -> dict[str, str]:
    """{normalised name: version} of a requirements file; fails on any line that is not a pin."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: '{line}' is not pinned with =="
        pins[_normal(match[1])] = match[2]
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)],
        cwd=REPO_ROOT,  # picks up .hadolint.yaml
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing():
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_with_our_config_still_reports_unpinned_pip_and_root(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:3.11-slim-bookworm\nRUN pip install flask\nCMD ["flask"]\n')
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3013" in result.stdout and "DL3042" in result.stdout


def test_this_venv_runs_the_same_pins_as_the_image():
    """`make setup` installs requirements-dev.txt, which includes requirements.txt."""
    assert "-r requirements.txt" in (REPO_ROOT / "requirements-dev.txt").read_text()
    for name, version in pinned(REQUIREMENTS).items():
        assert metadata.version(name) == version, name


def test_build_context_holds_the_bundle_and_code_but_no_secrets_or_state(tmp_path):
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        if (REPO_ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / name, tmp_path / name)
    local_state = [
        "model_store/deepfake.mar",
        "key_file.json",
        ".git/HEAD",
        ".venv/bin/python",
        "mlflow.db",
        "mlruns/0/meta.yaml",
        "images/split.json",
        "checkpoints/best.pt",
        "logs/model_log.log",
        "client/__pycache__/api.cpython-311.pyc",
        "deploy/kserve/storage/model-store/deepfake.mar",
    ]
    for name in local_state:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    patterns = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p for p in patterns if p.strip() and not p.startswith("#")]
    context = exclude_paths(str(tmp_path), patterns)
    needed = {
        "Dockerfile",
        "config.properties",
        "requirements.txt",
        "handler/deepfake_handler.py",
        "client/healthcheck.py",
        "handler/metrics.yaml",
        "model/pipeline.py",
        "model_store/deepfake.mar",
    }
    assert needed <= context
    assert not context & set(local_state[1:])


def test_healthcheck_fails_with_a_message_when_nothing_listens():
    [port] = free_ports(1)
    result = subprocess.run(
        [sys.executable, "-m", "client.healthcheck", "--management-url",
         f"http://127.0.0.1:{port}", "--no-auth"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot ask http://127.0.0.1:{port}" in result.stderr
