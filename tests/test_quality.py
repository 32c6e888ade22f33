"""Quality flags on real and generated videos: each is raised where its evidence is, and never
where it is not, and none changes a score."""

from __future__ import annotations

from dataclasses import replace

import av
import numpy as np
import pytest

from model.quality import QualityConfig
from model.service import AnalysisRequest, DetectorService
from model.video import SamplingConfig
from support.video_factory import encode_video, grace_hopper_rgb
from support.weights import seeded_network
from tests.test_service import TORCH_FP32

pytestmark = pytest.mark.integration  # real and generated videos through the service: ~30 s


@pytest.fixture(scope="module")
def service() -> DetectorService:
    network, settings = seeded_network()  # 160 px input
    return DetectorService(network, settings, TORCH_FP32, "0" * 64)


def flags(service: DetectorService, video) -> dict[str, str]:
    return {flag["flag"]: flag["reason"] for flag in service.analyze(video).body["quality_flags"]}


def sample(sample_videos, name):
    return next(v for v in sample_videos if v.name == name).path


def first_frames(path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = container.decode(video=0)
        return [next(frames).to_ndarray(format="rgb24") for _ in range(count)]


def test_heavy_compression_is_flagged_at_ffpp_low_quality_not_at_its_high(service, sample_videos):
    """x264 at CRF 40 (FaceForensics++'s c40) and at 23 (c23) of the same 3 s of a sample."""
    frames = first_frames(sample(sample_videos, "a_wolfgang_c1.mp4"), 72)
    low = flags(service, encode_video(frames, fps=24, crf=40))
    high = flags(service, encode_video(frames, fps=24, crf=23))
    assert "heavy_compression" in low and "bits per pixel" in low["heavy_compression"]
    assert "heavy_compression" not in high


def test_every_sample_video_is_of_a_quality_that_needs_no_compression_flag(service, sample_videos):
    # Each sample's bit rate is read from its container, 0.027-0.092 bits per pixel.
    for video in sample_videos:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            bits = (stream.bit_rate or container.bit_rate) / (
                stream.width * stream.height * float(stream.average_rate)
            )
        assert bits > QualityConfig().min_bits_per_pixel, video.name


def test_a_face_lost_for_most_of_its_span_is_flagged_as_missed():
    """Grace Hopper, then 3 s of her photo covered, then her again: sampled every 20th frame,
    she is found in 2 of the 5 sampled frames from her first to her last."""
    network, settings = seeded_network()
    every_20th = replace(TORCH_FP32, sampling=SamplingConfig.exactly_every(20))
    service = DetectorService(network, settings, every_20th, "0" * 64)
    face = grace_hopper_rgb()
    covered = np.full_like(face, 90)
    frames = [face] * 20 + [covered] * 60 + [face] * 20
    found = flags(service, encode_video(frames, fps=20))
    assert "faces_missed" in found and "60%" in found["faces_missed"]
    assert "few_faces" in found  # 2 faces, fewer than 4
    assert "small_faces" not in found  # her face is larger than the 160 px the network sees
    steady = flags(service, encode_video([face] * 100, fps=20))
    assert not {"faces_missed", "few_faces"} & set(steady)


def test_small_faces_and_many_people_follow_their_thresholds(service, sample_videos):
    group = sample(sample_videos, "a_still_multi_face.mp4")  # 5 faces found, ~70 px each
    plain = service.analyze(group).body
    found = {flag["flag"]: flag["reason"] for flag in plain["quality_flags"]}
    assert "small_faces" in found and "160 px" in found["small_faces"]
    assert "5 people" in found["many_people"]  # more than 4
    lenient = AnalysisRequest(replace(TORCH_FP32, quality=QualityConfig(max_people=5)))
    roomy = service.analyze(group, lenient).body
    assert "many_people" not in {flag["flag"] for flag in roomy["quality_flags"]}
    assert roomy["fake_probability"] == plain["fake_probability"]  # flags change no score
