"""The load test's own run, small: mixed uploads from 8 clients against 2 workers, then one
worker killed mid-load (`make loadtest` runs the full 200 requests)."""

from __future__ import annotations

import re

import pytest

from benchmarks import loadtest

pytestmark = pytest.mark.serving


def test_small_load_answers_everything_and_survives_a_killed_worker(sample_videos, capsys):
    code = loadtest.main(["--requests", "24", "--clients", "8", "--time-limit-s", "300"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^loadtest: 24/24 answered, 0 unexpected errors, p95 \d+ ms$", out, re.M)
    killed = re.search(r"again after ([\d.]+) s; (\d+) request\(s\) failed", out)
    assert killed and float(killed.group(1)) < 240 and int(killed.group(2)) <= loadtest.BATCH_SIZE
