"""A test's TorchServe (support/torchserve.py) takes five free loopback ports of its own, none
of them one `make demo`'s server (config.properties) holds, so the suite passes beside it. No
server is started here."""

from __future__ import annotations

import pytest

from deploy.ts_config import read_properties
from support.torchserve import (
    PORT_KEYS,
    REPO_ROOT,
    config_text,
    free_server_ports,
    port_of,
    server_env,
    write_config,
)

# TorchServe 0.12's own defaults, taken for a key config.properties leaves out.
TORCHSERVE_DEFAULTS = {8080, 8081, 8082, 7070, 7071}


def test_a_test_server_config_names_five_free_ports_none_of_them_the_demo_servers(tmp_path):
    config_file = tmp_path / "config.properties"
    ports = write_config(config_file, tmp_path / "store")
    config = read_properties(config_file.read_text())
    shipped = read_properties((REPO_ROOT / "config.properties").read_text())
    demo_ports = TORCHSERVE_DEFAULTS | {
        port_of(shipped[key]) for key in PORT_KEYS if key in shipped
    }

    named = [port_of(config[key]) for key in PORT_KEYS]
    assert named == ports
    assert len(set(named)) == len(PORT_KEYS) == 5
    assert not set(named) & demo_ports
    for key in PORT_KEYS[:3]:
        assert config[key].startswith("http://127.0.0.1:"), config[key]
    for key, value in config.items():  # no other setting points at a demo port either
        clash = [port for port in demo_ports if value.endswith(f":{port}") or value == str(port)]
        assert not clash, (key, value)


def test_a_test_server_refuses_ports_from_its_overrides(tmp_path):
    with pytest.raises(ValueError, match=r"picks its own ports: drop \['grpc_inference_port'\]"):
        config_text(tmp_path, free_server_ports(), grpc_inference_port="7070")


def test_a_test_server_ignores_ts_config_and_port_variables_and_keeps_its_pid_file(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TS_INFERENCE_ADDRESS", "http://0.0.0.0:8080")
    monkeypatch.setenv("TS_GRPC_INFERENCE_PORT", "7070")
    monkeypatch.setenv("TS_CONFIG_FILE", str(REPO_ROOT / "config.properties"))
    env = server_env(tmp_path, tmp_path / "logs", {"TS_GRPC_MANAGEMENT_PORT": "7071"})
    assert not {"TS_CONFIG_FILE", *(f"TS_{key.upper()}" for key in PORT_KEYS)} & set(env)
    # `torchserve --stop` reads its pid file from the temp folder: this server's own.
    assert env["TMPDIR"] == env["TEMP"] == str(tmp_path / "tmp")
