"""The Dockerfile without a Docker engine: hadolint, its pins, its build context, its settings."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from docker.utils.build import exclude_paths

from tests.torchserve_harness import REPO_ROOT, free_ports

DOCKERFILE = REPO_ROOT / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
HADOLINT = Path(sys.executable).parent / "hadolint"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    joined, parts = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        joined.append(" ".join([*parts, stripped]))
        parts = []
    return [tuple(item.split(None, 1)) for item in joined]  # type: ignore[misc]


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


def test_every_pip_install_takes_the_pins_of_requirements_txt():
    pins = pinned(REQUIREMENTS)
    runs = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "RUN"]
    installs = [
        shlex.split(command)
        for run in runs
        for command in run.split("&&")
        if re.search(r"\bpip install\b", command)
    ]
    assert len(installs) == 2, installs
    derived = {"/tmp/requirements.txt": REQUIREMENTS.read_text()}
    for run in runs:  # files cut out of requirements.txt with grep in the same RUN
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["grep", "-E"] and words[3] in derived and words[4] == ">":
                lines = derived[words[3]].splitlines()
                derived[words[5]] = "\n".join(line for line in lines if re.search(words[2], line))
    installed = {}
    for words in installs:
        files, names, arguments = [], [], iter(words[words.index("install") + 1 :])
        for word in arguments:
            if word in ("-r", "--index-url", "--extra-index-url", "-c"):
                value = next(arguments)
                files += [value] if word == "-r" else []
                assert word != "--extra-index-url", "one index per install: no mixing"
            elif not word.startswith("-"):
                names.append(word)
        assert not names, f"packages named outside requirements.txt: {names}"
        for file in files:
            assert file in derived, f"{file} is not requirements.txt or cut from it"
            installed.update(pinned_lines(derived[file]))
    assert installed == pins
    # The install from TORCH_INDEX_URL takes torch and torchvision only.
    [torch_index] = [words for words in installs if "--index-url" in words]
    assert torch_index[torch_index.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    assert set(pinned_lines(derived[torch_index[torch_index.index("-r") + 1]])) == {
        "torch",
        "torchvision",
    }


def pinned_lines(text: str) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return {_normal(m[1]): m[2] for m in map(PIN.match, lines) if m}


def test_this_venv_runs_the_same_pins_as_the_image():
    """`make setup` installs requirements-dev.txt, which includes requirements.txt."""
    assert "-r requirements.txt" in (REPO_ROOT / "requirements-dev.txt").read_text()
    for name, version in pinned(REQUIREMENTS).items():
        assert metadata.version(name) == version, name


def test_image_settings():
    steps = instructions(DOCKERFILE.read_text())
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    settings = {keyword: args for keyword, args in final}
    assert settings["USER"] not in ("root", "0")
    assert settings["EXPOSE"].split() == ["8080", "8081", "8082"]
    assert "handler.healthcheck" in settings["HEALTHCHECK"]
    assert '"--foreground"' in settings["CMD"] and '"model_store"' in settings["CMD"]
    base = next(args for keyword, args in steps if keyword == "ARG" and "PYTHON_IMAGE=" in args)
    tag = base.split(":", 1)[1]
    assert tag.startswith(f"{sys.version_info.major}.{sys.version_info.minor}-"), (
        "the image's Python is the one the pins are verified on"
    )
    java = [args for keyword, args in final if keyword == "RUN" and "openjdk-" in args]
    assert java and "openjdk-17-jre-headless" in java[0]


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
        "handler/__pycache__/client.cpython-311.pyc",
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
        "handler/healthcheck.py",
        "handler/metrics.yaml",
        "model/pipeline.py",
        "model_store/deepfake.mar",
    }
    assert needed <= context
    assert not context & set(local_state[1:])


def test_healthcheck_fails_with_a_message_when_nothing_listens():
    [port] = free_ports(1)
    result = subprocess.run(
        [sys.executable, "-m", "handler.healthcheck", "--management-url",
         f"http://127.0.0.1:{port}", "--no-auth"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot ask http://127.0.0.1:{port}" in result.stderr
