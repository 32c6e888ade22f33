"""The bench's physical floors: the network's operation count and the floors' arithmetic."""

from __future__ import annotations

import pytest

from benchmarks.floors import StageFloors, gflop_per_crop


def test_xception_operation_count_matches_its_published_size():
    # Xception at 299 px: 8.4 G multiply-adds (Chollet 2017, Keras' table), 2 operations each.
    assert gflop_per_crop(299) == pytest.approx(16.8, rel=0.02)


def test_stage_floors_add_up_over_the_cores():
    floors = StageFloors(
        decode_cpu_s=0.6,
        detect_cpu_s=0.2,
        crops=15,
        gflop_per_crop=16.0,
        peak_gflops=400.0,
        peak_dtype="bfloat16",
        cores=2,
    )
    assert floors.classify_cpu_s == pytest.approx(15 * 16.0 / 200.0)  # 1.2 CPU-s on one core
    assert floors.wall_ms("decode") == pytest.approx(300.0)
    assert floors.wall_ms("classify") == pytest.approx(600.0)
    assert floors.request_s == pytest.approx((0.6 + 0.2 + 1.2) / 2)
