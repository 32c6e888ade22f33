"""The detector as one object: built from a checkpoint or an unpacked archive, it chooses the
classifier's engine for this machine, shares the cores, and turns a video into a finished
`Analysis` (verdict, explanations, the response body).

The TorchServe handler, `training.evaluate`, `training.infer` and the benchmarks all score
through it, so a verdict is the same wherever it is made.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import ServiceConfig
from model.cpu import cpu_model, limit_library_threads, usable_cores
from model.device import device_name
from model.errors import CheckpointError
from model.explain import grad_cam
from model.faces import make_detector
from model.memory import release_free_heap, return_large_buffers_to_os
from model.network import ModelSettings, file_sha256, load_checkpoint
from model.people import FaceDescriber, link_people
from model.pipeline import Face, score_video
from model.provenance import ProvenanceReader
from model.quality import quality_flags
from model.report import ModelInfo, explanation_report, verdict_report
from model.runtime import INT8_MODEL_NAME, candidate_paths, choose_classifier
from model.sandbox import DecoderSandbox
from model.tensors import crops_to_batch
from model.verdict import VideoVerdict, verdict
from model.video import VideoReader, VideoSource
from protocol.wire import read_archive_info

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisRequest:
    """One request's settings: the service's configuration with the request's options applied
    (handler/inputs.py checks them against the server's bounds)."""

    config: ServiceConfig
    include_crops: bool = False
    explain_faces: int = 0  # Grad-CAM for this many most suspicious faces (0: none)


@dataclass
class Analysis:
    """A scored video: the verdict, its explanations, and the response body they make."""

    verdict: VideoVerdict
    body: dict[str, Any]
    explanations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.verdict.label


class DetectorService:
    """Scores videos with one network on this machine's best engine."""

    def __init__(
        self,
        network: Any,
        settings: ModelSettings,
        config: ServiceConfig,
        checkpoint_sha256: str,
        int8_model: Path | None = None,
        workers: int = 1,
        gpu: torch.device | None = None,
    ) -> None:
        verdict_rule = config.verdict.with_model_threshold(settings.decision_threshold)
        config = dataclasses.replace(config, verdict=verdict_rule)
        self.network, self.settings, self.config = network, settings, config
        self.threads = self._thread_share(workers)
        limit_library_threads(self.threads)
        # Warm-up here, never on a user's request: one full micro-batch per candidate path,
        # which also times them where more than one is worth trying on this CPU.
        engine = config.engine
        candidates = candidate_paths(engine.inference_path, None, int8_model is not None, gpu)
        on_gpu = all(path.runtime == "cuda" for path in candidates)
        self.crops_per_batch = engine.cuda_crops_per_batch if on_gpu else engine.crops_per_batch
        blank = [np.zeros((settings.input_size,) * 2 + (3,), np.uint8)] * self.crops_per_batch
        chosen = choose_classifier(
            engine.inference_path,
            network,
            settings,
            self.threads,
            crops_to_batch(blank, settings),
            int8_model,
            gpu=gpu,
        )
        self.path, self.classifier = chosen.path, chosen.classifier
        # After the paths were timed, before any frame is decoded, and for OpenVINO only: torch
        # allocates each activation anew and runs slower on fresh pages (docs/performance.md).
        self.buffers_to_os = (
            engine.return_large_buffers_to_os
            and self.path.runtime == "openvino"
            and return_large_buffers_to_os()
        )
        self.detector = make_detector(config.detector)
        self.describe = FaceDescriber() if config.people.descriptors else None
        self.provenance = ProvenanceReader(config.credentials)
        release_free_heap()  # what starting up freed: ~100 MB of a worker's resident memory
        # Uploads are decoded in a confined child process (model/sandbox.py); its zygote
        # starts now, so the first request does not wait for it.
        self.sandbox = (
            DecoderSandbox(config.sandbox, config.credentials) if config.sandbox.enabled else None
        )
        self.open_video = self.sandbox.open if self.sandbox else VideoReader
        if self.sandbox:
            self.sandbox.start()
        self.model_info = ModelInfo(
            name=settings.name,
            version=settings.version,
            checkpoint_sha256=checkpoint_sha256,
            input_size=settings.input_size,
            inference_path=self.path.name,
            precision=self.classifier.precision,
            path_chosen_by=chosen.chosen_by,
            device=device_name(self.classifier.device),
            detector=self.detector.searches,
            measured_images_per_s={n: round(r, 1) for n, r in chosen.images_per_s.items()},
            calibration=(
                {"method": "temperature", "temperature": settings.temperature}
                | ({"fitted": settings.calibration} if settings.calibration else {})
                if settings.temperature != 1.0 or settings.calibration
                else {"method": "none"}
            ),
        )
        logger.info(
            "deepfake: %s %s ready on %s: path %s (%s, by %s; img/s %s), torch threads %d, "
            "large buffers %s, sha256 %s",
            settings.name,
            settings.version,
            cpu_model(),
            self.path.name,
            self.classifier.precision,
            chosen.chosen_by,
            self.model_info.measured_images_per_s or "not timed",
            self.threads,
            "returned to the OS" if self.buffers_to_os else "kept by malloc",
            checkpoint_sha256[:12],
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        config: ServiceConfig | None = None,
        workers: int = 1,
        gpu: torch.device | None = None,
    ) -> DetectorService:
        network, settings = load_checkpoint(path)
        config = config or ServiceConfig()
        return cls(network, settings, config, file_sha256(path), workers=workers, gpu=gpu)

    @classmethod
    def from_archive(
        cls,
        model_dir: Path,
        weights_name: str,
        config: ServiceConfig,
        workers: int = 1,
        gpu: torch.device | None = None,
    ) -> DetectorService:
        """From an unpacked .mar (a worker's model_dir): every file archive.json records is
        checked against its sha256 first. `gpu`: the worker's CUDA device, if it has one."""
        archived = read_archive_info(model_dir)
        weights = model_dir / weights_name
        sha256 = _verified_sha256(weights, archived["checkpoint_sha256"])
        int8_files = archived.get("int8", {}).get("sha256") or {}
        for name, recorded in int8_files.items():
            _verified_sha256(model_dir / name, recorded)
        network, settings = load_checkpoint(weights)
        int8_model = model_dir / INT8_MODEL_NAME if int8_files else None
        return cls(network, settings, config, sha256, int8_model, workers, gpu)

    def share_cores(self, workers: int) -> None:
        """This worker's share of the cores when `workers` run beside it (operators scale
        workers while the server runs, so the caller re-checks per batch)."""
        wanted = self._thread_share(workers)
        if wanted != self.threads:
            limit_library_threads(wanted)
            self.classifier.set_threads(wanted)
            self.threads = wanted
            logger.info("deepfake: torch threads %d (%d usable cores)", wanted, usable_cores())

    def request(self, **options: Any) -> AnalysisRequest:
        """An AnalysisRequest on this service's configuration."""
        return AnalysisRequest(self.config, **options)

    def analyze(self, video: VideoSource, request: AnalysisRequest | None = None) -> Analysis:
        """Video (path or bytes) to a finished analysis; bad input raises a VideoInputError."""
        request = request or self.request()
        config = request.config
        engine = config.engine
        faces = score_video(
            video,
            self.classifier,
            self.settings,
            config.sampling,
            self.detector,
            self.crops_per_batch,  # the engine is the service's, never a request's
            config.limits,
            engine.skip_unsampled_frames,
            # Overlap only with 2+ cores to this worker: on one the threads would take turns.
            overlap_stages=engine.overlap_stages and self.threads >= 2,
            decode_threads=self.threads,
            open_video=self.open_video,
            max_faces=config.limits.max_faces,
        )
        started = time.perf_counter()
        people = link_people(faces.frames, self.describe, config.people)
        faces.timing_ms["track"] = (time.perf_counter() - started) * 1000.0
        # A request built on an unresolved configuration still gets the model's threshold.
        rule = config.verdict.with_model_threshold(self.settings.decision_threshold)
        scored = verdict(faces, rule, people, config.people, self.settings.real_person_logit)
        flags = quality_flags(scored, self.settings, config.quality)
        started = time.perf_counter()
        # Read by the sandboxed decoder; else here, after decoding, so only a video gets here.
        provenance = faces.provenance or self.provenance.read(video, faces.container)
        faces.timing_ms["provenance"] = (time.perf_counter() - started) * 1000.0
        body = verdict_report(
            scored, flags, config.sampling, self.model_info, provenance, request.include_crops
        )
        analysis = Analysis(scored, body)
        if request.explain_faces:
            analysis.explanations = self.explain(scored.faces.faces, request.explain_faces)
            body["explanations"] = analysis.explanations
        return analysis

    def explain(self, faces: list[Face], count: int) -> list[dict[str, Any]]:
        """Grad-CAM of the `count` most suspicious faces, most suspicious first."""
        chosen = sorted(faces, key=lambda face: -face.fake_probability)[:count]
        heatmaps = grad_cam(self.network, self.settings, [face.crop for face in chosen])
        return [explanation_report(f, h) for f, h in zip(chosen, heatmaps, strict=True)]

    def _thread_share(self, workers: int) -> int:
        threads = self.config.engine.torch_threads
        return threads if threads != "auto" else max(1, usable_cores() // max(1, workers))


def _verified_sha256(path: Path, recorded: str) -> str:
    sha256 = file_sha256(path)
    if sha256 != recorded:
        raise CheckpointError(
            f"{path.name} has sha256 {sha256}, the archive recorded {recorded}: "
            "the .mar is damaged; rebuild it"
        )
    return sha256
