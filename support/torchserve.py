"""Start a real TorchServe for a test: free loopback ports, its own folder for the key file,
logs, pid file and Java temp files, so it never meets a server a user is running."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from client.api import DeepfakeClient, ServerAddress
from deploy.ts_config import read_properties

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCHSERVE = Path(sys.executable).parent / "torchserve"
# Every port a TorchServe 0.12 opens, as config.properties names them; a test's server takes
# a free one for each, so it runs beside `make demo`'s (which holds the repo config's ports).
PORT_KEYS = (
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_port",
    "grpc_management_port",
)
# What TorchServe takes for a key config.properties leaves out.
DEFAULT_PORTS = dict(zip(PORT_KEYS, (8080, 8081, 8082, 7070, 7071), strict=True))


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def port_of(value: str) -> int:
    """The port of an address (`http://127.0.0.1:8080`) or of a bare port (`7070`)."""
    return int(value.rsplit(":", 1)[-1])


def shipped_ports() -> dict[str, int]:
    """The ports the repo's config.properties (what `make demo` serves with) opens, by key."""
    config = read_properties((REPO_ROOT / "config.properties").read_text())
    return {key: port_of(config[key]) if key in config else DEFAULT_PORTS[key] for key in PORT_KEYS}


def free_server_ports() -> list[int]:
    """One free loopback port for each of PORT_KEYS, none of them a shipped one."""
    shipped = set(shipped_ports().values())
    for _ in range(10):
        ports = free_ports(len(PORT_KEYS))
        if not shipped & set(ports):
            return ports
    raise RuntimeError(f"the kernel keeps handing out one of {sorted(shipped)}")


def wait_for_http(
    url: str, process: subprocess.Popen, log_path: Path, what: str, timeout_s: float
) -> None:
    """Until GET `url` answers 2xx; RuntimeError with the end of `log_path` if `process` exits
    first or `timeout_s` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@dataclass
class RunningServer:
    workdir: Path
    log_dir: Path
    client: DeepfakeClient

    @property
    def model_log(self) -> str:
        return (self.log_dir / "model_log.log").read_text(errors="replace")


def config_text(model_store: Path, ports: list[int], **overrides: str) -> str:
    """The repo's config.properties with the test's ports (one for each of PORT_KEYS, in that
    order), store and absolute paths; `overrides` may set anything but a port."""
    if taken := sorted(set(overrides) & set(PORT_KEYS)):
        raise ValueError(f"a test server picks its own ports: drop {taken} from the overrides")
    addresses = [f"http://127.0.0.1:{port}" for port in ports[:3]]
    settings = {
        **dict(zip(PORT_KEYS, [*addresses, *map(str, ports[3:])], strict=True)),
        "model_store": str(model_store),
        "metrics_config": str(REPO_ROOT / "handler" / "metrics.yaml"),
        **overrides,
    }
    lines = []
    for line in (REPO_ROOT / "config.properties").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={settings.pop(key)}" if key in settings else line)
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, model_store: Path, **overrides: str) -> list[int]:
    """A test server's config.properties at `path` on free ports (`config_text`); the ports."""
    ports = free_server_ports()
    path.write_text(config_text(model_store, ports, **overrides))
    return ports


def server_env(
    workdir: Path, log_dir: Path, extra_env: dict[str, str] | None = None
) -> dict[str, str]:
    env = {**os.environ, **(extra_env or {})}
    # TorchServe's pid file lives in the temp folder: a private one keeps a user's server apart.
    env.update(
        TMPDIR=str(workdir / "tmp"),
        TEMP=str(workdir / "tmp"),
        LOG_LOCATION=str(log_dir),
        METRICS_LOCATION=str(log_dir),
    )
    env.pop("PYTHONPATH", None)  # the worker must import model/ from the archive alone
    # TS_CONFIG_FILE would win over --ts-config, and (enable_envvars_config=true) a
    # TS_INFERENCE_ADDRESS or TS_GRPC_INFERENCE_PORT (the image sets some) over its free ports.
    for name in ["TS_CONFIG_FILE", *(f"TS_{key.upper()}" for key in PORT_KEYS)]:
        env.pop(name, None)
    return env


def start_server(
    workdir: Path, model_store: Path, extra_env: dict[str, str] | None = None, **overrides: str
) -> RunningServer:
    """TorchServe on free loopback ports with a private temp folder, key file and logs;
    `extra_env` is added to its environment, `overrides` to its config.properties."""
    log_dir = workdir / "logs"
    (workdir / "tmp").mkdir(parents=True)
    log_dir.mkdir()
    config = workdir / "config.properties"
    ports = write_config(config, model_store, **overrides)
    subprocess.run(
        [str(TORCHSERVE), "--start", "--ncs", "--ts-config", str(config)],
        cwd=workdir,
        env=server_env(workdir, log_dir, extra_env),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    token_auth = overrides.get("disable_token_authorization", "false") != "true"
    address = ServerAddress(
        inference_url=f"http://127.0.0.1:{ports[0]}",
        management_url=f"http://127.0.0.1:{ports[1]}",
        metrics_url=f"http://127.0.0.1:{ports[2]}",
        key_file=workdir / "key_file.json" if token_auth else None,
    )
    server = RunningServer(workdir, log_dir, DeepfakeClient(address, timeout_s=300))
    try:
        server.client.wait_ready(timeout_s=240)
    except BaseException:
        stop_server(server)
        raise
    return server


@contextlib.contextmanager
def serving(
    workdir: Path, model_store: Path, extra_env: dict[str, str] | None = None, **overrides: str
) -> Iterator[RunningServer]:
    """`start_server` for the length of a `with` block, stopped however the block ends."""
    server = start_server(workdir, model_store, extra_env, **overrides)
    try:
        yield server
    finally:
        stop_server(server)


def stop_server(server: RunningServer) -> None:
    """`torchserve --stop` of this server only (its pid file is in its private temp folder),
    then kill whatever of it is left (processes whose command line names its folder)."""
    subprocess.run(
        [str(TORCHSERVE), "--stop", "--foreground"],
        cwd=server.workdir,
        env=server_env(server.workdir, server.log_dir),
        stdout=subprocess.DEVNULL,
        check=False,
    )
    marker = f"{server.workdir}{os.sep}"  # the separator keeps torchserve1 off torchserve10
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
    shutil.rmtree(server.workdir / "tmp", ignore_errors=True)


def worker_processes(server: RunningServer) -> list[psutil.Process]:
    """The server's Python workers (their socket paths lie in its private temp folder)."""
    marker = f"{server.workdir}{os.sep}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "model_service_worker" in command and marker in command:
            found.append(process)
    return found
