"""The bad-input corpus (support/bad_inputs.py) against a real TorchServe: each upload gets its
documented status and a JSON body naming the problem; no 500s, the worker survives every one,
and the server's temp folder holds nothing more afterwards."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import requests

from support.bad_inputs import CORPUS, SECRETS, Case, matches
from support.torchserve import REPO_ROOT, worker_processes

pytestmark = pytest.mark.serving

RESPONSE_TIMEOUT_S = 300  # handler/model-config.yaml responseTimeout


@pytest.fixture(scope="module")
def answers(server):
    """(case, response) for the whole corpus, sent one after another, plus the worker's pid
    and the temp folder's listing before and after."""
    temp = server.workdir / "tmp"
    before = _listing(temp)
    pids_before = {p.pid for p in worker_processes(server)}
    url = f"{server.client.address.inference_url}/predictions/deepfake"
    auth = server.client.auth_headers("inference")
    results = [(case, _send(url, auth, case)) for case in CORPUS]
    return results, before, _listing(temp), pids_before, {p.pid for p in worker_processes(server)}


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_each_upload_gets_its_documented_answer(answers, case: Case):
    results, *_ = answers
    response = next(r for c, r in results if c is case)
    assert response.status_code == case.status, (case.name, response.text[:300])
    if case.status == 413 and case.error is None:
        return  # TorchServe's own size limit: answered by its frontend, before the handler
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    if case.status == 200:
        assert body["label"] in ("fake", "real", "uncertain", "no_face")
        assert (body["label"] == "no_face") == (case.label == "no_face"), body["label"]
        if case.credentials:
            credentials = body["provenance"]["content_credentials"]
            assert credentials["status"] == case.credentials, credentials
        return
    assert body["status"] == case.status and body["error"] == case.error, body
    assert matches(case, body["message"]), body["message"]
    assert "Traceback" not in body["message"]


def test_no_answer_is_a_server_error_and_the_worker_survives(answers, server):
    results, _, _, pids_before, pids_after = answers
    assert not [c.name for c, r in results if r.status_code >= 500]
    assert pids_before and pids_after == pids_before, "a worker died or was restarted"


def test_a_nested_open_answers_the_same_whether_or_not_the_file_exists(answers):
    results, *_ = answers
    bodies = [r.json() for c, r in results if c.name.startswith("FFmpeg concat script")]
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_the_temp_folder_is_unchanged_by_the_corpus(answers):
    _, before, after, *_ = answers
    assert after == before


def test_ten_faces_are_all_found(answers):
    results, *_ = answers
    response = next(r for c, r in results if c.name == "10 faces")
    counts = [len(frame["faces"]) for frame in response.json()["frames"]]
    assert max(counts) == 10, counts


def test_the_server_still_scores_after_the_corpus(answers, server, sample_videos):
    video = next(v for v in sample_videos if v.name == "a_wolfgang_c1.mp4")
    assert server.client.predict(video.path, {"frames": 2})["faces_found"] >= 1


def _send(url: str, auth: dict[str, str], case: Case) -> requests.Response:
    body = case.make()
    if case.send == "multipart_wrong_field":
        return requests.post(url, files={"video": body}, headers=auth, timeout=RESPONSE_TIMEOUT_S)
    content_type = {"json": "application/json", "text": "text/plain"}.get(
        case.send, "application/octet-stream"
    )
    headers = {**auth, "Content-Type": content_type}
    return requests.post(url, data=body, headers=headers, timeout=RESPONSE_TIMEOUT_S)


def _listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_corpus_names_are_unique():
    """Cases are looked up by name above."""
    names = [case.name for case in CORPUS]
    assert len(names) == len(set(names))


def test_workers_never_see_the_operators_credentials(answers, server):
    workers = worker_processes(server)
    assert workers
    for worker in workers:
        environment = worker.environ()
        assert "TMPDIR" in environment  # the harness's own variable did arrive
        leaked = set(SECRETS) & set(environment)
        assert not leaked, f"worker {worker.pid} received {sorted(leaked)}"


def test_no_credential_key_or_upload_is_echoed_in_answers_or_logs(answers, server):
    results, *_ = answers
    inference_key = server.client.auth_headers("inference")["Authorization"].split()[-1]
    texts = [response.text for _, response in results]
    texts += [path.read_text(errors="replace") for path in server.log_dir.glob("*.log")]
    for secret in [*SECRETS.values(), inference_key]:
        assert not [t for t in texts if secret in t], "a secret appears in an answer or a log"
    head = next(c for c, _ in results if c.name == "random bytes").make()[:48]
    for encoded in (head.hex(), base64.b64encode(head).decode()):
        assert not any(encoded in t for t in texts), "an answer or log echoes the upload"


def test_the_shipped_config_is_hardened():
    config = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "config.properties").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    for port in ("inference_address", "management_address", "metrics_address"):
        assert config[port].startswith("http://127.0.0.1:"), config[port]
    assert config["disable_token_authorization"] == "false"
    assert config["enable_model_api"] == "false"
    assert config["model_store"] == "model_store" and config["load_models"] == "deepfake.mar"
    assert config["allowed_urls"] == "file://.*/model_store/.*"
    blocked = re.compile(config["blacklist_env_vars"])
    for name in [*SECRETS, "AWS_ACCESS_KEY_ID", "HF_TOKEN", "DB_PASSWORD"]:
        assert blocked.fullmatch(name), name
    assert not blocked.fullmatch("PATH") and not blocked.fullmatch("TMPDIR")


def test_registering_a_model_over_the_api_is_refused(server):
    url = f"{server.client.address.management_url}/models"
    auth = server.client.auth_headers("management")
    for source in ("https://example.com/evil.mar", "file:///etc/passwd"):
        response = requests.post(url, params={"url": source}, headers=auth, timeout=30)
        assert response.status_code in (400, 403, 405), (source, response.text)
    assert server.client.ready_workers() >= 1
