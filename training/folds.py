"""Leave-identities-out folds (protocol v2, docs/training.md): which identity groups each fold
holds out, and the split a fold trains on."""

from __future__ import annotations

from collections import Counter

# Groups cut from one photo with overlapping edges: one unit, held out together.
SHARED_PHOTO_PREFIXES = ("solvay_1927_",)
PROTOCOL_FOLDS = 5
# A fold's swaps that no recipe trains on: they may show a held-out person's face.
UNUSED = "unused"


def protocol_folds(split: dict, fold_count: int = PROTOCOL_FOLDS) -> list[list[str]]:
    """Every group held out exactly once in `fold_count` folds balanced by swaps, then real
    clips: units (a group, or the groups of one shared photo) are dealt most swaps first, then
    most reals, then by name, each to the fold with the fewest swaps, then reals, then lowest
    number. Deterministic: no seed, nothing looked at but the labels."""
    units: dict[str, list[str]] = {}
    for group in sorted({video["group"] for video in split["videos"]}):
        unit = next((p for p in SHARED_PHOTO_PREFIXES if group.startswith(p)), group)
        units.setdefault(unit, []).append(group)
    counts = {
        unit: Counter(v["label"] for v in split["videos"] if v["group"] in groups)
        for unit, groups in units.items()
    }
    if len(units) < fold_count:
        raise ValueError(f"{len(units)} identity groups cannot fill {fold_count} folds")
    order = sorted(units, key=lambda u: (-counts[u]["fake"], -counts[u]["real"], u))
    folds: list[list[str]] = [[] for _ in range(fold_count)]
    placed = [Counter() for _ in range(fold_count)]
    for unit in order:
        number = min(range(fold_count), key=lambda n: (placed[n]["fake"], placed[n]["real"], n))
        folds[number].extend(units[unit])
        placed[number].update(counts[unit])
    return [sorted(fold) for fold in folds]


def parse_folds(text: str) -> list[list[str]]:
    """ "a;b;c,d" -> [["a"], ["b"], ["c", "d"]]."""
    return [
        [group.strip() for group in fold.split(",") if group.strip()] for fold in text.split(";")
    ]


def fold_split(split: dict, held_out: list[str]) -> dict:
    """The split with the held-out groups' videos as validation and every other as training,
    except swaps that could show a held-out face: a swap is trained on only where its
    `donor_group` is known and is neither a held-out group nor the donor of a held-out swap
    (else the network could learn that face as "fake", or a donor's face as such, and
    recognise it in the held-out swaps); those are `unused`. Only recipes that train on the
    split's swaps (`fake_source` videos or both) see the difference."""
    unknown = sorted(set(held_out) - {v["group"] for v in split["videos"]})
    if unknown:
        raise ValueError(f"no videos of group(s) {unknown} in the split")
    held = set(held_out)
    shown = held | {v.get("donor_group") for v in split["videos"] if v["group"] in held}

    def side(video: dict) -> str:
        if video["group"] in held:
            return "val"
        donor = video.get("donor_group")
        return UNUSED if video["label"] == "fake" and (donor is None or donor in shown) else "train"

    return dict(split, videos=[dict(video, split=side(video)) for video in split["videos"]])
