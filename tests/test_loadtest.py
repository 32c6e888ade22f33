"""The load test's own run, small: mixed uploads from 8 clients against 2 workers, then one
worker killed mid-load (`make loadtest` runs the full 200 requests)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from support.torchserve import REPO_ROOT

pytestmark = pytest.mark.serving
# Requests one worker holds at once: what killing it may cost.
BATCH_SIZE = yaml.safe_load((REPO_ROOT / "handler" / "model-config.yaml").read_text())["batchSize"]


def test_small_load_answers_everything_and_survives_a_killed_worker(sample_videos):
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadtest", "--requests", "24", "--clients", "8",
         "--time-limit-s", "300"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = run.stdout
    assert run.returncode == 0, out + run.stderr[-3000:]
    assert re.search(r"^loadtest: 24/24 answered, 0 unexpected errors, p95 \d+ ms$", out, re.M)
    killed = re.search(r"again after ([\d.]+) s; (\d+) request\(s\) failed", out)
    assert killed and float(killed.group(1)) < 240 and int(killed.group(2)) <= BATCH_SIZE
