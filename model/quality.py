"""How much to trust a verdict: flags, each with a reason in plain words. They never change a
score; they say when it rests on little or poor evidence."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from model.network import ModelSettings
from model.verdict import VideoVerdict


@dataclass(frozen=True)
class QualityConfig:
    min_faces: int = 4  # fewer faces analysed: few_faces
    # Below: heavy_compression. x264 re-encodes of sample videos measured 0.004-0.011 bits per
    # pixel at CRF 40 (FaceForensics++'s low quality, c40), 0.018-0.070 at CRF 23 (its c23).
    min_bits_per_pixel: float = 0.015
    max_people: int = 4  # more: many_people
    max_missed_share: float = 0.3  # a person missing from more of their span: faces_missed


@dataclass(frozen=True)
class QualityFlag:
    flag: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"flag": self.flag, "reason": self.reason}


def quality_flags(
    verdict: VideoVerdict, settings: ModelSettings, config: QualityConfig
) -> list[QualityFlag]:
    faces, info = verdict.faces, verdict.faces.info
    found = faces.faces
    flags = []
    if faces.truncated:
        flags.append(
            QualityFlag(
                "truncated",
                f"the server's limit of faces per video was reached after {len(found)} faces: "
                "later frames were not analysed",
            )
        )
    side = median(max(f.box.width, f.box.height) for f in found) if found else None
    if side is not None and side < settings.input_size:
        flags.append(
            QualityFlag(
                "small_faces",
                f"faces are small (median {side:.0f} px, the network looks at "
                f"{settings.input_size} px): upscaled crops hide the traces a swap leaves",
            )
        )
    if 0 < len(found) < config.min_faces:
        flags.append(
            QualityFlag(
                "few_faces",
                f"only {len(found)} face(s) analysed: the verdict rests on little evidence; "
                "ask for more frames",
            )
        )
    if info is not None and info.bit_rate and info.fps > 0:
        bits_per_pixel = info.bit_rate / (info.width * info.height * info.fps)
        if bits_per_pixel < config.min_bits_per_pixel:
            flags.append(
                QualityFlag(
                    "heavy_compression",
                    f"heavily compressed ({bits_per_pixel:.3f} bits per pixel): compression "
                    "wipes out the detail the detector looks for",
                )
            )
    if len(verdict.people) > config.max_people:
        flags.append(
            QualityFlag(
                "many_people",
                f"{len(verdict.people)} people: each is judged on fewer, smaller faces",
            )
        )
    sampled = [frame.frame_index for frame in faces.frames]
    for judged in verdict.people:
        person = judged.person
        first, last = person.faces[0].frame_index, person.faces[-1].frame_index
        span = [index for index in sampled if first <= index <= last]
        missed = 1 - len(person.faces) / len(span)
        if missed > config.max_missed_share:
            flags.append(
                QualityFlag(
                    "faces_missed",
                    f"person {person.person_id} has no detected face in {missed:.0%} of the "
                    "frames between their first and last: the detector misses faces turned to "
                    "profile or covered, so those moments were not judged",
                )
            )
    return flags
