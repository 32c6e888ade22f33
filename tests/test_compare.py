"""training.compare: the paired difference of two protocol-v2 runs."""

from __future__ import annotations

import json

import pytest

from training.compare import compare, main, paired_rate_gain


def _served(probabilities: dict[str, float]) -> dict[str, dict]:
    """Served videos as training.crossval writes them: r* real, p* / f* swaps of two methods."""
    methods = {"r": "still-motion", "p": "poisson", "f": "feather"}
    return {
        video: {"label": int(video[0] != "r"), "method": methods[video[0]], "fake_probability": p}
        for video, p in probabilities.items()
    }


BEFORE = _served({"r1": 0.2, "r2": 0.6, "r3": 0.4, "p1": 0.5, "p2": 0.3, "f1": 0.7, "f2": 0.8})


def test_a_lever_that_lifts_one_method_shows_its_gain_there_alone():
    after = _served({"r1": 0.2, "r2": 0.6, "r3": 0.4, "p1": 0.9, "p2": 0.95, "f1": 0.7, "f2": 0.8})
    rows = {row["subset"]: row for row in compare(BEFORE, after)}
    assert set(rows) == {"all", "poisson", "feather"}
    # Poisson swaps vs the three reals: 3 of 6 pairs ranked right before, 6 of 6 after
    assert rows["poisson"]["auc_before"] == pytest.approx(0.5)
    assert rows["poisson"]["auc_after"] == pytest.approx(1.0)
    assert rows["poisson"]["gain"] == pytest.approx(0.5)
    assert rows["poisson"]["gain_low"] <= 0.5 <= rows["poisson"]["gain_high"]
    assert rows["feather"]["gain"] == 0 and rows["feather"]["gain_low"] == 0
    assert rows["all"]["videos"] == 7 and rows["all"]["gain"] > 0


def test_the_same_run_twice_moves_nothing_and_different_videos_are_refused(tmp_path, capsys):
    before, other = tmp_path / "before.json", tmp_path / "other.json"
    before.write_text(json.dumps({"served": BEFORE}))
    assert main([str(before), str(before)]) == 0
    assert "+0.000 [+0.000, +0.000]" in capsys.readouterr().out
    other.write_text(json.dumps({"served": {**BEFORE, "r4": BEFORE["r1"]}}))
    assert main([str(before), str(other)]) == 2
    assert "different videos" in capsys.readouterr().err


def test_paired_rate_change_counts_swaps_above_their_own_real_clip():
    before = _served({"r1": 0.5, "r2": 0.5, "p1": 0.4, "p2": 0.6, "f1": 0.3, "f2": 0.7})
    for swap, source in {"p1": "r1", "f1": "r1", "p2": "r2", "f2": "r2"}.items():
        before[swap]["source_video"] = source
    after = {video: dict(served) for video, served in before.items()}
    after["p1"]["fake_probability"] = after["f1"]["fake_probability"] = 0.9
    gain = paired_rate_gain(before, after)
    assert gain["swaps"] == 4
    assert gain["rate_before"] == 0.5 and gain["rate_after"] == 1.0
    # Resampling the two real clips with their swaps: r1's pair went 0 -> 1, r2's stayed 1.
    assert gain["gain_low"] == pytest.approx(0.0) and gain["gain_high"] == pytest.approx(1.0)
    assert paired_rate_gain(BEFORE, BEFORE) is None  # no swap names its real clip
