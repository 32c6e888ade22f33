"""Per-video probability from per-face ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.aggregation import FACE_RULE_FUNCTIONS, aggregate

probabilities = st.floats(0.0, 1.0, allow_nan=False)
frames_with_faces = st.lists(st.lists(probabilities, max_size=4), min_size=1, max_size=40).filter(
    lambda frames: any(frames)
)


def test_no_face_gives_none_not_a_score():
    assert aggregate([], "mean") is None
    assert aggregate([[], [], []], "confident") is None


def test_mean_is_over_all_faces():
    assert aggregate([[0.2, 0.4], [0.9]], "mean") == pytest.approx(0.5)


def test_face_max_takes_the_most_suspicious_face_per_frame():
    # One swapped face among four real ones in each frame.
    frames = [[0.9, 0.1, 0.1, 0.1, 0.1]] * 5
    assert aggregate(frames, "face_max") == pytest.approx(0.9)
    assert aggregate(frames, "mean") == pytest.approx(0.26)


def test_confident_rule_follows_many_confident_fakes():
    frames = [[0.95]] * 12 + [[0.3]] * 8
    assert aggregate(frames, "confident") == pytest.approx(0.95)
    assert aggregate(frames, "mean") == pytest.approx((0.95 * 12 + 0.3 * 8) / 20)


def test_confident_rule_follows_nearly_all_confident_reals():
    frames = [[0.05]] * 19 + [[0.6]]
    assert aggregate(frames, "confident") == pytest.approx(0.05)


def test_confident_rule_falls_back_to_the_mean_for_short_clips():
    frames = [[0.9]] * 5 + [[0.3]]
    assert aggregate(frames, "confident") == pytest.approx((0.9 * 5 + 0.3) / 6)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown face rule"):
        aggregate([[0.5]], "median")


@given(frames_with_faces, st.sampled_from(sorted(FACE_RULE_FUNCTIONS)))
def test_every_rule_stays_in_unit_interval(frames, rule):
    assert 0.0 <= aggregate(frames, rule) <= 1.0


@given(frames_with_faces, st.sampled_from(sorted(FACE_RULE_FUNCTIONS)), st.randoms())
def test_frame_order_does_not_matter(frames, rule, random):
    shuffled = list(frames)
    random.shuffle(shuffled)
    assert aggregate(shuffled, rule) == pytest.approx(aggregate(frames, rule))
