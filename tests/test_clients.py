"""Code lives where it runs: clients start without the worker's libraries, the wire protocol
needs nothing outside the standard library, and the protocol agrees with the worker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.aggregation import FACE_RULE_FUNCTIONS
from protocol import wire
from support.torchserve import REPO_ROOT

WORKER_LIBRARIES = ("torch", "dlib", "av", "openvino", "ts")


def imported_after(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after `statement`."""
    probe = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(result.stdout)}


@pytest.mark.integration  # a fresh interpreter importing gradio: 5-7 s
def test_the_clients_import_no_worker_library():
    loaded = imported_after(
        "import client.__main__, client.api, client.healthcheck, client.report, client.sheet, "
        "ui.app, ui.present"
    )
    assert not loaded & set(WORKER_LIBRARIES), sorted(loaded & set(WORKER_LIBRARIES))


def test_the_health_check_and_the_wire_protocol_need_only_the_standard_library():
    ours = {"protocol", "client"}
    for module in ("protocol.wire", "client.healthcheck"):
        outside = imported_after(f"import {module}") - set(sys.stdlib_module_names) - ours
        assert not outside - {"__main__", "_distutils_hack"}, (module, sorted(outside))


def test_the_protocol_names_the_workers_rules_and_labels():
    # The person rule lives in verdict.py, the face rules here.
    assert (wire.PERSON_RULE, *FACE_RULE_FUNCTIONS) == wire.AGGREGATIONS
    assert wire.result_line("a.mp4", "fake", 0.91234) == "a.mp4 0.9123 fake"
    assert wire.result_line("b.mp4", "no_face", None) == "b.mp4 no_face no_face"
    assert wire.result_line("c.mp4", None, None, "not a video") == "c.mp4 error: not a video"
    assert wire.person_result_name("a.mp4", 2) == "a.mp4#person-2"
    assert wire.option_headers({"explain_faces": 2}) == {"X-Deepfake-Explain-Faces": "2"}
