"""Held-out videos judged whole as the server judges them, and protocol v2's measures of them
(docs/training.md "The evaluation protocol"): video AUC overall, per swap method and per CRF,
the paired rate, the false-alarm rate, and how steady one person's face scores are."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from model.aggregation import aggregate
from model.verdict import VerdictConfig, VideoVerdict
from protocol.wire import FAKE, NO_FACE, UNCERTAIN
from training.metrics import NO_FACE_SCORE, bootstrap_interval, rank_auc

# The sample group clip where one face of five is swapped and the camera barely moves: the
# protocol reports how steady each person's score is there.
GROUP_CLIP = "a_fs_still_multi_face__astronaut"
RESAMPLES = 2000
FALSE_ALARM_TARGET = 0.10  # real clips labelled fake, at most (protocol v2)


@dataclass(frozen=True)
class ServedVideo:
    """One held-out video's served verdict, with what the protocol groups it by."""

    video_id: str
    label: int  # 1 = fake
    fake_probability: float  # the served rule's; NO_FACE_SCORE when no face was found
    # The same rule without the crowd correction: the verdict person's own probability.
    uncorrected_probability: float
    mean_probability: float  # the mean over the same faces
    verdict_label: str
    method: str | None  # the swap method of a fake, from the metadata
    crf: int | None
    source_video: str | None  # a fake's real clip
    person_scores: list[list[float]]  # per person with 2+ faces, face scores in time order
    verdict_person_frame_share: float | None  # frames whose top face is the verdict person


def served_video(video: dict, judged: VideoVerdict) -> ServedVideo:
    """A split entry and its verdict from the `DetectorService` -> one `ServedVideo`."""
    mean = aggregate(judged.faces.frame_probabilities(), "mean")
    people = [p.person for p in judged.people if len(p.person.faces) >= 2]
    served = NO_FACE_SCORE if judged.fake_probability is None else judged.fake_probability
    return ServedVideo(
        video_id=video["video_id"],
        label=int(video["label"] == "fake"),
        fake_probability=served,
        uncorrected_probability=served if judged.crowd is None else judged.crowd.person_probability,
        mean_probability=NO_FACE_SCORE if mean is None else mean,
        verdict_label=judged.label,
        method=video.get("method"),
        crf=video.get("crf"),
        source_video=video.get("source_video"),
        person_scores=[[face.fake_probability for face in person.faces] for person in people],
        verdict_person_frame_share=_verdict_person_frame_share(judged),
    )


def _verdict_person_frame_share(judged: VideoVerdict) -> float | None:
    """Share of sampled frames with faces whose highest-scoring face is the verdict person's."""
    if judged.verdict_person is None:
        return None
    frames = [frame.faces for frame in judged.faces.frames if frame.faces]
    suspect = judged.verdict_person.person.person_id
    tops = [max(faces, key=lambda face: face.fake_probability).person_id for faces in frames]
    return sum(top == suspect for top in tops) / len(tops)


def auc_with_interval(videos: Sequence[ServedVideo], name: str) -> dict[str, float]:
    """`name`, `name_low`, `name_high`: served video AUC with its bootstrap 95% interval."""
    labels = [video.label for video in videos]
    scores = [video.fake_probability for video in videos]
    if len(set(labels)) < 2:
        return {}
    low, high = bootstrap_interval(labels, scores, rank_auc, resamples=RESAMPLES)
    return {name: float(roc_auc_score(labels, scores)), f"{name}_low": low, f"{name}_high": high}


def rate_with_interval(outcomes: Sequence[float], name: str) -> dict[str, float]:
    """The mean of per-item outcomes (1, 0 or 0.5) with a percentile bootstrap 95% interval."""
    values = np.asarray(outcomes, np.float64)
    if len(values) == 0:
        return {}
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {name: float(values.mean()), f"{name}_low": float(low), f"{name}_high": float(high)}


def served_metrics(served: Sequence[ServedVideo]) -> dict[str, float]:
    """Protocol v2's measures of the served verdicts, each with its bootstrap 95% interval."""
    reals = [video for video in served if video.label == 0]
    fakes = [video for video in served if video.label == 1]
    metrics: dict[str, float] = {
        "served_videos": len(served),
        "served_real_videos": len(reals),
        "served_fake_videos": len(fakes),
    }
    metrics.update(auc_with_interval(served, "served_video_auc"))
    mean_rule = [_with_probability(video, video.mean_probability) for video in served]
    metrics.update(auc_with_interval(mean_rule, "served_mean_video_auc"))
    uncorrected = [_with_probability(v, v.uncorrected_probability) for v in served]
    metrics.update(auc_with_interval(uncorrected, "served_uncorrected_video_auc"))
    for method in sorted({video.method for video in fakes if video.method}):
        of_method = [video for video in fakes if video.method == method]
        metrics.update(auc_with_interval([*reals, *of_method], f"served_video_auc_{method}"))
    for crf in sorted({video.crf for video in served if video.crf is not None}):
        at_crf = [video for video in served if video.crf == crf]
        metrics.update(auc_with_interval(at_crf, f"served_video_auc_crf{crf}"))
    paired = paired_outcomes(served)
    metrics.update(rate_with_interval(paired, "paired_rate"))
    metrics["paired_swaps"] = len(paired)
    judged_reals = [video for video in reals if video.verdict_label != NO_FACE]
    judged_fakes = [video for video in fakes if video.verdict_label != NO_FACE]
    for prefix, videos in (("real", judged_reals), ("fake", judged_fakes)):
        for label in (FAKE, UNCERTAIN):
            outcomes = [float(video.verdict_label == label) for video in videos]
            metrics.update(rate_with_interval(outcomes, f"{prefix}_labelled_{label}"))
    if "real_labelled_fake" in metrics:
        for suffix in ("", "_low", "_high"):
            metrics[f"false_alarm_rate{suffix}"] = metrics[f"real_labelled_fake{suffix}"]
    metrics.update(threshold_for_false_alarms(served, VerdictConfig()))
    metrics.update(stability(reals, "stability_real"))
    group_clip = [video for video in served if video.video_id == GROUP_CLIP]
    if group_clip:
        metrics.update(stability(group_clip, "stability_group_clip"))
        if group_clip[0].verdict_person_frame_share is not None:
            metrics["group_clip_verdict_person_frame_share"] = group_clip[
                0
            ].verdict_person_frame_share
    return metrics


def threshold_for_false_alarms(
    served: Sequence[ServedVideo], config: VerdictConfig, target: float = FALSE_ALARM_TARGET
) -> dict[str, float]:
    """The lowest threshold (0.50 to 0.95 by 0.01; `config`'s uncertain band kept) at which at
    most `target` of the real clips with faces would be labelled fake, and the share of swaps
    that would still be labelled fake there: what the served threshold should be."""
    reals = [v.fake_probability for v in served if v.label == 0 and v.verdict_label != NO_FACE]
    fakes = [v.fake_probability for v in served if v.label == 1 and v.verdict_label != NO_FACE]
    if not reals or not fakes:
        return {}
    for threshold in np.round(np.arange(0.50, 0.951, 0.01), 2):
        rule = dataclasses.replace(config, threshold=float(threshold))
        false_alarms = np.mean([rule.label(p) == FAKE for p in reals])
        if false_alarms <= target:
            return {
                "fitted_threshold": float(threshold),
                "fitted_threshold_false_alarm_rate": float(false_alarms),
                "fitted_threshold_fake_labelled_fake": float(
                    np.mean([rule.label(p) == FAKE for p in fakes])
                ),
            }
    return {}


def pair_outcome(swap_probability: float, source_probability: float) -> float:
    """A swap against the real clip it was made from: 1 above it, 0.5 level, 0 below."""
    difference = swap_probability - source_probability
    return 1.0 if difference > 0 else 0.5 if difference == 0 else 0.0


def paired_outcomes(served: Sequence[ServedVideo]) -> list[float]:
    """`pair_outcome` of each swap whose real clip was also scored."""
    by_id = {video.video_id: video for video in served}
    outcomes = []
    for video in served:
        real = by_id.get(video.source_video) if video.label == 1 else None
        if real is not None:
            outcomes.append(pair_outcome(video.fake_probability, real.fake_probability))
    return outcomes


def stability(videos: Sequence[ServedVideo], name: str) -> dict[str, float]:
    """Median and 90th percentile over people of the range of their face scores in a clip."""
    ranges = [max(s) - min(s) for video in videos for s in video.person_scores]
    if not ranges:
        return {}
    return {
        f"{name}_range_median": float(np.median(ranges)),
        f"{name}_range_p90": float(np.percentile(ranges, 90)),
        f"{name}_people": len(ranges),
    }


def _with_probability(video: ServedVideo, probability: float) -> ServedVideo:
    return dataclasses.replace(video, fake_probability=probability)


def format_metrics(metrics: dict[str, float]) -> str:
    """The protocol's headline figures, one per line, `value [low, high]`."""

    lines = []
    for name, value in metrics.items():
        if name.endswith(("_low", "_high")):
            continue
        line = f"  {name}: {value:.3f}" if isinstance(value, float) else f"  {name}: {value}"
        if f"{name}_low" in metrics:
            line += f" [{metrics[f'{name}_low']:.3f}, {metrics[f'{name}_high']:.3f}]"
        lines.append(line)
    return "\n".join(lines)
