"""The fuzzer's mutations, and (slow) a bounded fuzzing run whose every outcome is clean."""

from __future__ import annotations

import numpy as np
import pytest

from support.bad_inputs import face_clip
from support.samples import SAMPLE_DATA
from tools.fuzz import MUTATIONS, edit_length, fuzz, iso_boxes


def test_the_box_walk_finds_the_boxes_a_splice_or_edit_works_on():
    clip = face_clip()
    kinds = {clip[offset + 4 : offset + 8] for offset, _ in iso_boxes(clip)}
    assert {b"ftyp", b"moov", b"mdat", b"trak", b"stbl"} <= kinds
    rng = np.random.default_rng(0)
    for name, mutate in MUTATIONS.items():
        mutated = [mutate(clip, rng, [clip]) for _ in range(5)]
        assert any(m != clip for m in mutated), name
    edited = edit_length(clip, np.random.default_rng(3), [clip])
    assert len(edited) == len(clip) and edited != clip


@pytest.mark.slow
def test_a_seeded_fuzzing_run_gets_only_clean_answers(sample_videos, tmp_path):
    run = fuzz(cases=1500, seed=1, seconds=400, sample_data=SAMPLE_DATA, keep=tmp_path)
    assert sum(run.counts.values()) >= 1000, run.counts  # thousands within minutes
    assert run.failures == [], run.failures[:5]
    # Mutations reach every kind of outcome, so the run exercises more than the format check.
    assert run.counts["decoded"] > 0 and run.counts["VideoInputError"] > 0, run.counts
