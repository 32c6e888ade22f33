"""Two protocol-v2 runs side by side: how far a lever moved the served video AUC, overall and
per swap method, and the paired rate (a swap above the real clip it was made from), each with
a paired bootstrap interval. Both runs judge the same held-out videos, so resampling the
videos once for both cancels what the videos share, and the interval of the difference is
much narrower than the two runs' own intervals side by side.

    python -m training.compare crossval.json lever.json   # outputs of `make crossval`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.heldout import pair_outcome
from training.metrics import bootstrap_interval, rank_auc


def auc_gain(labels: np.ndarray, paired_scores: np.ndarray) -> float:
    """AUC of the second column minus AUC of the first, on the same videos."""
    return rank_auc(labels, paired_scores[:, 1]) - rank_auc(labels, paired_scores[:, 0])


def served_videos(path: Path) -> dict[str, dict]:
    """The served videos of one `training.crossval` output, by video id."""
    return json.loads(path.read_text())["served"]


def compare(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """One row per subset (all videos; each swap method's swaps with every real clip): the
    served video AUC before and after, their difference and its paired 95% interval."""
    shared = sorted(set(before) & set(after))
    if len(shared) != len(before) or len(shared) != len(after):
        raise ValueError(
            f"the runs judged different videos ({len(before)} and {len(after)}, "
            f"{len(shared)} in both): compare runs of the same protocol and folds"
        )
    labels = np.array([before[video]["label"] for video in shared])
    scores = np.array(
        [[before[v]["fake_probability"], after[v]["fake_probability"]] for v in shared]
    )
    methods = sorted({before[v]["method"] for v in shared if before[v]["label"] == 1})
    subsets = {"all": labels >= 0}
    for method in methods:
        subsets[method] = np.array(
            [before[v]["label"] == 0 or before[v]["method"] == method for v in shared]
        )
    rows = []
    for name, chosen in subsets.items():
        y, pair = labels[chosen], scores[chosen]
        low, high = bootstrap_interval(y, pair, auc_gain)
        rows.append(
            {
                "subset": name,
                "videos": int(chosen.sum()),
                "auc_before": rank_auc(y, pair[:, 0]),
                "auc_after": rank_auc(y, pair[:, 1]),
                "gain": auc_gain(y, pair),
                "gain_low": low,
                "gain_high": high,
            }
        )
    return rows


def paired_rate_gain(
    before: dict[str, dict], after: dict[str, dict], resamples: int = 2000, seed: int = 0
) -> dict | None:
    """The paired rate before and after, on the swaps whose real clip both runs scored, and
    the 95% interval of its change, resampling real clips with all their swaps (the swaps of
    one real clip share its score); None without such swaps."""
    swaps = [
        video
        for video, served in sorted(before.items())
        if served["label"] == 1 and served.get("source_video") in before and video in after
    ]
    if not swaps:
        return None

    def above_source(run: dict[str, dict], video: str) -> float:
        source = run[video]["source_video"]
        return pair_outcome(run[video]["fake_probability"], run[source]["fake_probability"])

    outcomes = np.array([[above_source(before, v), above_source(after, v)] for v in swaps])
    sources = np.array([before[v]["source_video"] for v in swaps])
    groups = [np.flatnonzero(sources == source) for source in np.unique(sources)]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(resamples):
        chosen = np.concatenate([groups[k] for k in rng.integers(len(groups), size=len(groups))])
        gains.append(outcomes[chosen, 1].mean() - outcomes[chosen, 0].mean())
    low, high = np.percentile(gains, [2.5, 97.5])
    return {
        "swaps": len(swaps),
        "rate_before": float(outcomes[:, 0].mean()),
        "rate_after": float(outcomes[:, 1].mean()),
        "gain": float(outcomes[:, 1].mean() - outcomes[:, 0].mean()),
        "gain_low": float(low),
        "gain_high": float(high),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="crossval output of the recipe a lever changes")
    parser.add_argument("after", type=Path, help="crossval output of the recipe with the lever")
    args = parser.parse_args(argv)
    try:
        before, after = served_videos(args.before), served_videos(args.after)
        rows = compare(before, after)
        paired = paired_rate_gain(before, after)
    except (OSError, KeyError, ValueError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    for row in rows:
        print(
            f"{row['subset']} ({row['videos']} videos): served video AUC "
            f"{row['auc_before']:.3f} -> {row['auc_after']:.3f}, "
            f"{row['gain']:+.3f} [{row['gain_low']:+.3f}, {row['gain_high']:+.3f}]"
        )
    if paired is not None:
        print(
            f"paired rate ({paired['swaps']} swaps): {paired['rate_before']:.3f} -> "
            f"{paired['rate_after']:.3f}, {paired['gain']:+.3f} "
            f"[{paired['gain_low']:+.3f}, {paired['gain_high']:+.3f}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
