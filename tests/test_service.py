"""The detector service in process: the verdicts it gives on every sample video stay what
they were, and it owns the engine, the cores and the explanations."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from model.config import EngineConfig, ServiceConfig
from model.cpu import usable_cores
from model.service import DetectorService
from model.verdict import VerdictConfig
from model.video import VideoLimits
from support.weights import seeded_network

# Per-video verdicts and per-face probabilities of the seeded network below on every sample
# video, recorded before the service existed (the pipeline called step by step). Regenerate
# only for a change that is meant to alter verdicts: python -m tests.test_service --record
RECORDED = Path(__file__).parent / "data" / "verdicts-seeded-160.json"
# The recorded verdicts are the mean rule's, which stays selectable beside the person rule.
TORCH_FP32 = ServiceConfig(
    engine=EngineConfig(inference_path="torch-fp32"),
    verdict=VerdictConfig(aggregation="mean", uncertain_band=0.0),
)


@pytest.fixture(scope="module")
def service() -> DetectorService:
    network, settings = seeded_network()
    return DetectorService(network, settings, TORCH_FP32, "0" * 64)


def verdicts(service: DetectorService, videos) -> dict[str, dict]:
    found = {}
    for video in videos:
        scored = service.analyze(video.path).verdict
        found[video.path.name] = {
            "label": scored.label,
            "fake_probability": scored.fake_probability,
            "faces": [
                [frame.frame_index, [face.box.as_list() for face in frame.faces]]
                for frame in scored.faces.frames
                if frame.faces
            ],
            "face_probabilities": [face.fake_probability for face in scored.faces.faces],
        }
    return found


@pytest.mark.integration  # every sample video: ~20 s
def test_every_sample_video_keeps_its_recorded_verdict(service, sample_videos):
    recorded = json.loads(RECORDED.read_text())
    found = verdicts(service, sample_videos)
    assert set(found) == set(recorded)
    for name, expected in recorded.items():
        now = found[name]
        assert now["label"] == expected["label"], name
        assert now["faces"] == expected["faces"], name
        assert now["face_probabilities"] == pytest.approx(expected["face_probabilities"], abs=1e-4)
        if expected["fake_probability"] is None:
            assert now["fake_probability"] is None, name
        else:
            assert now["fake_probability"] == pytest.approx(expected["fake_probability"], abs=1e-4)
    spread = [v["fake_probability"] for v in recorded.values() if v["fake_probability"]]
    assert max(spread) - min(spread) > 0.02  # a record where 1e-4 means something


def test_explanations_are_the_most_suspicious_faces_first(service, one_face_video):
    analysis = service.analyze(one_face_video.path, service.request(explain_faces=2))
    explained = analysis.body["explanations"]
    scores = sorted((face.fake_probability for face in analysis.verdict.faces.faces), reverse=True)
    assert [e["fake_probability"] for e in explained] == pytest.approx(scores[:2], abs=1e-6)
    assert {e["method"] for e in explained} == {"grad-cam"}
    assert "explanations" not in service.analyze(one_face_video.path).body


def test_workers_share_the_cores_and_a_configured_count_is_kept(service):
    service.share_cores(workers=2)
    assert service.threads == max(1, usable_cores() // 2)
    service.share_cores(workers=1)
    assert service.threads == usable_cores()
    network, settings = seeded_network()
    pinned = ServiceConfig(engine=EngineConfig(inference_path="torch-fp32", torch_threads=1))
    fixed = DetectorService(network, settings, pinned, "0" * 64, workers=4)
    fixed.share_cores(workers=1)
    assert fixed.threads == 1


@pytest.mark.integration  # compiles an OpenVINO model: ~9 s on 2 cores
def test_openvino_paths_return_large_buffers_to_the_os_and_torch_paths_never(monkeypatch):
    calls = []  # glibc's setting is process-wide and cannot be undone: recorded, not made
    monkeypatch.setattr("model.service.return_large_buffers_to_os", lambda: calls.append(1) or True)
    network, settings = seeded_network()
    torch_path = DetectorService(network, settings, TORCH_FP32, "0" * 64)
    assert not torch_path.buffers_to_os and not calls  # torch runs slower on fresh pages
    openvino = ServiceConfig(engine=EngineConfig(inference_path="openvino-fp32"))
    served = DetectorService(network, settings, openvino, "0" * 64)
    assert served.buffers_to_os and calls == [1]
    assert served.model_info.inference_path == "openvino-fp32"
    assert served.model_info.path_chosen_by == "configured"


# Every field of response schema 1.0 and its type: a 1.1 body keeps them all, same meaning.
SCHEMA_1_0 = {
    "schema_version": str,
    "label": str,
    "fake_probability": (float, type(None)),
    "threshold": float,
    "aggregation": str,
    "frames_analyzed": int,
    "faces_found": int,
    "frames": list,
    "video": dict,
    "sampling": dict,
    "model": dict,
    "timing_ms": dict,
}
FACE_1_0 = {"box": list, "crop_box": list, "detector_score": float, "fake_probability": float}


def test_a_1_1_body_keeps_every_1_0_field_and_adds_people(sample_videos):
    network, settings = seeded_network()
    by_people = ServiceConfig(engine=EngineConfig(inference_path="torch-fp32"))  # person_max
    video = next(v for v in sample_videos if v.name == "a_fs_still_multi_face__astronaut.mp4")
    body = DetectorService(network, settings, by_people, "0" * 64).analyze(video.path).body
    assert body["aggregation"] == "person_max"
    assert body["schema_version"] == "1.3"
    for name, kind in SCHEMA_1_0.items():
        assert isinstance(body[name], kind), name
    faces = [face for frame in body["frames"] for face in frame["faces"]]
    for face in faces:
        assert all(isinstance(face[name], kind) for name, kind in FACE_1_0.items())
    people = {person["person_id"]: person for person in body["people"]}
    assert {face["person_id"] for face in faces} == set(people)
    assert sum(person["faces"] for person in people.values()) == body["faces_found"]
    assert body["verdict_person"] in people
    suspect = people[body["verdict_person"]]
    counted = [p for p in people.values() if p["faces"] >= 2]  # verdict.min_person_faces
    assert suspect["fake_probability"] == max(p["fake_probability"] for p in counted)
    assert body["fake_probability"] == suspect["fake_probability"]  # the person rule
    assert body["crowd_correction"] is None  # the seeded settings carry no real people's spread
    assert all(set(flag) == {"flag", "reason"} for flag in body["quality_flags"])
    # (1.3) A model that carries real people's spread corrects the rule for the five people.
    crowd_settings = dataclasses.replace(settings, real_person_logit=(0.0, 0.3))
    service = DetectorService(network, crowd_settings, by_people, "0" * 64)
    corrected = service.analyze(video.path).body
    crowd = corrected["crowd_correction"]
    assert crowd["people"] == len(counted) and crowd["person_probability"] == pytest.approx(
        suspect["fake_probability"], abs=1e-6
    )
    assert corrected["fake_probability"] == crowd["fake_probability"] < crowd["person_probability"]
    assert corrected["people"] == body["people"]  # each person keeps their own score and label
    assert f"most suspicious of {len(counted)} people" in corrected["label_reason"]


def test_old_readers_of_1_0_fields_still_read_a_1_1_body(service, one_face_video, tmp_path):
    from client.sheet import write_contact_sheet
    from ui import present

    body = service.analyze(one_face_video.path, service.request(include_crops=True)).body
    assert present.HEADLINES[body["label"]] in present.verdict_markdown(body)
    assert present.batch_row("v.mp4", body, None)[1] == body["label"]
    write_contact_sheet({"v.mp4": body}, tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    panel = present.people_html(body)  # and the new ones show the one person
    assert panel.count('class="person-card"') == 1 and "Person 1" in panel


def test_a_crowd_past_the_face_limit_is_cut_short_and_says_so(sample_videos):
    network, settings = seeded_network()
    capped = ServiceConfig(
        engine=EngineConfig(inference_path="torch-fp32"), limits=VideoLimits(max_faces=6)
    )
    video = next(v for v in sample_videos if v.name == "a_still_multi_face.mp4")
    body = DetectorService(network, settings, capped, "0" * 64).analyze(video.path).body
    assert body["faces_found"] <= 6 and body["frames_analyzed"] < 5
    assert "truncated" in {flag["flag"] for flag in body["quality_flags"]}


def main() -> None:
    """Rewrite RECORDED from the current code (see its comment)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.samples import read_labels

    network, settings = seeded_network()
    found = verdicts(DetectorService(network, settings, TORCH_FP32, "0" * 64), read_labels())
    RECORDED.write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
