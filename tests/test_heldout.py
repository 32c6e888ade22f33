"""Protocol v2's measures of served verdicts, and its folds, on made-up videos."""

from __future__ import annotations

import dataclasses

import pytest

from model.verdict import VerdictConfig
from training.folds import UNUSED, fold_split, protocol_folds
from training.heldout import (
    GROUP_CLIP,
    ServedVideo,
    paired_outcomes,
    rate_with_interval,
    served_metrics,
    stability,
    threshold_for_false_alarms,
)


def video(video_id: str, label: int, probability: float, **fields) -> ServedVideo:
    verdict = "fake" if probability >= 0.6 else "real" if probability <= 0.4 else "uncertain"
    values = {
        "video_id": video_id,
        "label": label,
        "fake_probability": probability,
        "uncorrected_probability": probability,
        "mean_probability": probability,
        "verdict_label": verdict,
        "method": None,
        "crf": None,
        "source_video": None,
        "person_scores": [],
        "verdict_person_frame_share": None,
    }
    return ServedVideo(**{**values, **fields})


def test_paired_rate_compares_each_swap_with_its_own_real_clip():
    served = [
        video("r1", 0, 0.30),
        video("r2", 0, 0.80),  # a real clip above every swap: the AUC suffers, pairs need not
        video("f1", 1, 0.40, source_video="r1"),  # above its own real clip
        video("f2", 1, 0.70, source_video="r2"),  # below its own
        video("f3", 1, 0.30, source_video="r1"),  # level: half
        video("f4", 1, 0.90, source_video="absent"),  # its real clip was not scored: no pair
    ]
    assert paired_outcomes(served) == [1.0, 0.0, 0.5]
    metrics = served_metrics(served)
    assert metrics["paired_rate"] == pytest.approx(0.5)
    assert metrics["paired_swaps"] == 3
    assert metrics["paired_rate_low"] <= 0.5 <= metrics["paired_rate_high"]


def test_auc_is_reported_per_method_and_per_crf():
    served = [
        video("r23", 0, 0.2, crf=23),
        video("r36", 0, 0.5, crf=36),
        video("p23", 1, 0.9, crf=23, method="poisson"),
        video("p36", 1, 0.4, crf=36, method="poisson"),
        video("f23", 1, 0.6, crf=23, method="feather"),
    ]
    metrics = served_metrics(served)
    # poisson: 0.9 and 0.4 against 0.2 and 0.5 -> 3 of 4 pairs ordered
    assert metrics["served_video_auc_poisson"] == pytest.approx(0.75)
    assert metrics["served_video_auc_feather"] == pytest.approx(1.0)
    assert metrics["served_video_auc_crf23"] == pytest.approx(1.0)
    assert metrics["served_video_auc_crf36"] == pytest.approx(0.0)
    assert metrics["served_video_auc"] == pytest.approx(5 / 6)
    for name in ("served_video_auc", "served_video_auc_poisson"):
        assert metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"]


def test_false_alarms_count_reals_labelled_fake_and_leave_out_no_face_clips():
    served = [
        video("r1", 0, 0.9),  # fake: a false alarm
        video("r2", 0, 0.5),  # uncertain
        video("r3", 0, 0.1),
        video("r4", 0, 0.2),
        dataclasses.replace(video("r5", 0, 0.5), verdict_label="no_face"),
        video("f1", 1, 0.95),
    ]
    metrics = served_metrics(served)
    assert metrics["false_alarm_rate"] == pytest.approx(0.25)
    assert metrics["real_labelled_uncertain"] == pytest.approx(0.25)
    assert metrics["fake_labelled_fake"] == pytest.approx(1.0)
    assert 0.0 <= metrics["false_alarm_rate_low"] <= 0.25 <= metrics["false_alarm_rate_high"]


def test_stability_is_the_range_of_one_persons_scores_and_the_group_clip_is_named():
    steady = video("r1", 0, 0.3, person_scores=[[0.30, 0.32, 0.31]])
    swinging = video(GROUP_CLIP, 1, 0.8, person_scores=[[0.25, 0.79], [0.5, 0.6]])
    swinging = dataclasses.replace(swinging, verdict_person_frame_share=0.5)
    assert stability([steady], "s")["s_range_median"] == pytest.approx(0.02)
    metrics = served_metrics([steady, swinging])
    assert metrics["stability_real_people"] == 1
    assert metrics["stability_group_clip_range_median"] == pytest.approx((0.54 + 0.1) / 2)
    assert metrics["group_clip_verdict_person_frame_share"] == 0.5


def test_a_rate_interval_brackets_its_rate():
    rate = rate_with_interval([1.0] * 3 + [0.0] * 7, "r")
    assert rate["r"] == pytest.approx(0.3) and rate["r_low"] < 0.3 < rate["r_high"]
    assert rate_with_interval([], "r") == {}


def _split(groups: dict[str, tuple[int, int]]) -> dict:
    videos = []
    for group, (reals, fakes) in groups.items():
        for label, count in (("real", reals), ("fake", fakes)):
            videos += [{"group": group, "label": label} for _ in range(count)]
    return {"videos": videos}


def test_protocol_folds_hold_each_group_out_once_and_keep_a_shared_photo_together():
    groups = {f"person_{n}": (1 + n % 2, 2 * (n % 3)) for n in range(12)}
    groups |= {f"solvay_1927_t{n}": (1, 0) for n in range(10)}
    folds = protocol_folds(_split(groups), 5)
    assert len(folds) == 5
    held_out = [group for fold in folds for group in fold]
    assert sorted(held_out) == sorted(groups)  # every group exactly once
    [solvay_fold] = [fold for fold in folds if "solvay_1927_t0" in fold]
    assert {f"solvay_1927_t{n}" for n in range(10)} <= set(solvay_fold)
    fakes = [sum(groups[g][1] for g in fold) for fold in folds]
    assert max(fakes) - min(fakes) <= 2  # dealt to balance the swaps
    assert protocol_folds(_split(groups), 5) == folds  # no seed: the same every time
    with pytest.raises(ValueError, match="cannot fill"):
        protocol_folds(_split({"a": (1, 1), "b": (1, 1)}), 5)


def test_a_fold_trains_on_no_swap_that_could_show_a_held_out_face():
    def swap(video_id, target, donor):
        return {"video_id": video_id, "group": target, "label": "fake", "donor_group": donor}

    videos = [{"video_id": f"{g}_real", "group": g, "label": "real"} for g in "abcdef"]
    videos += [
        swap("b_from_a", "b", "a"),  # the held-out person's face pasted in
        swap("c_from_d", "c", "d"),  # d's face is also pasted into a held-out swap
        swap("a_from_d", "a", "d"),  # held out
        swap("e_from_f", "e", "f"),  # trainable
        swap("f_from_someone", "f", None),  # whose face: not said
    ]
    sides = {v["video_id"]: v["split"] for v in fold_split({"videos": videos}, ["a"])["videos"]}
    assert sides == {
        "a_real": "val", "b_real": "train", "c_real": "train", "d_real": "train",
        "e_real": "train", "f_real": "train", "b_from_a": UNUSED, "c_from_d": UNUSED,
        "a_from_d": "val", "e_from_f": "train", "f_from_someone": UNUSED,
    }  # fmt: skip


def test_the_fitted_threshold_keeps_false_alarms_under_the_target():
    reals = [video(f"r{n}", 0, p) for n, p in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.625])]
    reals += [video(f"q{n}", 0, 0.2) for n in range(3)]  # 10 reals, 2 above 0.6 at first
    fakes = [video("f1", 1, 0.9), video("f2", 1, 0.65)]
    fitted = threshold_for_false_alarms([*reals, *fakes], VerdictConfig(uncertain_band=0.1))
    # At 0.5 only the real at 0.625 reaches 0.6: 1 of 10, within the target.
    assert fitted["fitted_threshold"] == 0.5
    assert fitted["fitted_threshold_false_alarm_rate"] == pytest.approx(0.1)
    strict = threshold_for_false_alarms([*reals, *fakes], VerdictConfig(), target=0.0)
    assert strict["fitted_threshold"] == 0.53  # 0.625 is then inside the band: uncertain
    assert strict["fitted_threshold_fake_labelled_fake"] == pytest.approx(1.0)


def test_each_fold_is_crowd_corrected_with_real_people_from_the_other_folds():
    from model.verdict import VerdictConfig, verdict
    from support.people_factory import person_with, video_faces
    from training.crossval import judge_crowds, real_person_null

    rule = VerdictConfig(threshold=0.5)

    def served(video_id, label, people_probabilities):
        people = [person_with([p] * 3, n + 1) for n, p in enumerate(people_probabilities)]
        entry = {"video_id": video_id, "label": label}
        return entry, verdict(video_faces(people), rule, people)

    # Fold 0's real people score high; folds 1 and 2 hold the real people it is judged by.
    folds = [
        [served("group", "real", [0.7] * 6), served("swap", "fake", [0.9])],
        [served("r1", "real", [0.30, 0.35]), served("r2", "real", [0.40])],
        [served("r3", "real", [0.45, 0.5]), served("r4", "real", [0.25])],
    ]
    from model.config import ServiceConfig

    videos, nulls = judge_crowds(folds, ServiceConfig())
    assert nulls[0] == real_person_null(folds[1:])  # never fitted on itself
    assert nulls[1] == real_person_null([folds[0], folds[2]])
    by_id = {video.video_id: video for video in videos}
    group, swap = by_id["group"], by_id["swap"]
    assert group.uncorrected_probability == pytest.approx(0.7)
    assert group.fake_probability < 0.7  # the top of six real people, not of one
    assert swap.fake_probability == swap.uncorrected_probability == pytest.approx(0.9)
    # Too few real people to fit on: no correction rather than a guess.
    assert real_person_null([[served("r5", "real", [0.2])]]) is None
