"""TorchServe handler: video bytes in, the verdict JSON of model/report.py out.

A thin adapter over model/: it loads the archived checkpoint, reads the `deepfake:` block of the
model config, picks the classifier engine for this CPU, and scores each request of a batch with
`model.pipeline.score_video`. A bad request gets its own 4xx JSON; the others in the batch are
answered normally and the worker lives on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from handler.archive import ARCHIVE_INFO
from handler.options import (
    RequestError,
    ServingConfig,
    kserve_v1_instance,
    request_options,
    video_bytes,
)
from model.cpu import cpu_model, limit_library_threads, usable_cores
from model.errors import CheckpointError, VideoInputError, VideoLimitError
from model.explain import grad_cam, heatmap_grey, overlay
from model.faces import make_detector
from model.memory import return_large_buffers_to_os
from model.network import file_sha256, load_checkpoint
from model.pipeline import PipelineConfig, score_video, verdict_from_probabilities
from model.report import ModelInfo, encode_image_base64, error_report, verdict_report
from model.runtime import INT8_MODEL_NAME, choose_classifier
from model.tensors import crops_to_batch

# TorchServe's BaseHandler imports openvino.torch (its torch.compile backend) whenever OpenVINO
# is installed, which loads TorchDynamo, Inductor and Triton: +210 MB in every worker for a
# backend this handler never uses. A None entry makes that import fail cleanly (BaseHandler
# logs "OpenVINO is not enabled"); OpenVINO's own runtime, used below, does not need it.
sys.modules.setdefault("openvino.torch", None)

from ts.metrics.dimension import Dimension  # noqa: E402
from ts.torch_handler.base_handler import BaseHandler  # noqa: E402

logger = logging.getLogger(__name__)


class DeepfakeHandler(BaseHandler):
    def initialize(self, context: Any) -> None:
        self.config = ServingConfig.from_yaml(context.model_yaml_config)
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        weights = model_dir / context.manifest["model"]["serializedFile"]
        self.network, self.settings = load_checkpoint(weights)
        archived = json.loads((model_dir / ARCHIVE_INFO).read_text())
        sha256 = _verified_sha256(weights, archived["checkpoint_sha256"])
        int8_model = _archived_int8_model(model_dir, archived)
        self._threads = self._thread_share()
        limit_library_threads(self._threads)
        # Warm-up happens here, never on a user's request: one full micro-batch per candidate
        # path, which also times them where more than one is worth trying on this CPU.
        size, batch_size = self.settings.input_size, self.config.pipeline.batch_size
        blank = [np.zeros((size, size, 3), dtype=np.uint8)] * batch_size
        chosen = choose_classifier(
            self.config.inference_path,
            self.network,
            self.settings,
            self._threads,
            crops_to_batch(blank, self.settings),
            int8_model,
        )
        self.path, self.classifier = chosen.path, chosen.classifier
        # After the paths were timed, before any frame is decoded, and for OpenVINO only: torch
        # allocates each activation anew, and with fresh pages every time its forwards ran
        # 1.6-1.8x slower (model/memory.py).
        buffers_to_os = (
            self.config.return_large_buffers_to_os
            and self.path.runtime == "openvino"
            and return_large_buffers_to_os()
        )
        self.detector = make_detector(self.config.pipeline.detector)
        self.model_name = context.model_name
        self.model_info = ModelInfo(
            name=self.settings.name,
            version=self.settings.version,
            checkpoint_sha256=sha256,
            input_size=self.settings.input_size,
            inference_path=self.path.name,
            precision=self.classifier.precision,
            path_chosen_by=chosen.chosen_by,
            detector=self.detector.name,
            measured_images_per_s={
                name: round(rate, 1) for name, rate in chosen.images_per_s.items()
            },
        )
        if chosen.images_per_s:
            logger.info(
                "deepfake: inference paths timed at start (img/s, batch of %d): %s",
                batch_size,
                ", ".join(f"{name} {rate:.1f}" for name, rate in chosen.images_per_s.items()),
            )
        self.initialized = True
        logger.info(
            "deepfake: %s %s ready on %s: path %s (%s, by %s), torch threads %d, large buffers "
            "%s, sha256 %s",
            self.settings.name,
            self.settings.version,
            cpu_model(),
            self.path.name,
            self.classifier.precision,
            chosen.chosen_by,
            self._threads,
            "returned to the OS" if buffers_to_os else "kept by malloc",
            sha256[:12],
        )

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        """One JSON string per request, in order; statuses set per request on `context`.
        A KServe v1 request (its body {"instances": [...]}) gets its report wrapped as
        {"predictions": [report]} (or "explanations"); errors keep the same body everywhere."""
        self._share_cores()
        logger.info("deepfake: batch of %d request(s)", len(data))
        responses: list[dict[str, Any] | None] = [None] * len(data)
        v1_key: dict[int, str] = {}  # request index -> the v1 response's key
        for idx, row in enumerate(data):
            context.set_response_content_type(idx, "application/json")
            try:
                headers = context.get_all_request_header(idx)
                explain = context.get_request_header(idx, "explain") == "True"
                instance = kserve_v1_instance(row)
                if instance is not None:  # a JSON body: its Content-Type says nothing of video
                    v1_key[idx] = "explanations" if explain else "predictions"
                    row = instance
                video = video_bytes(row, None if instance is not None else headers)
                options = request_options(row, headers, self.config)
                faces, face_probabilities = score_video(
                    video,
                    self.classifier,
                    self.settings,
                    self._staged(options.pipeline),
                    self.detector,
                    self._threads,
                    self.config.limits,
                )
                verdict = verdict_from_probabilities(faces, face_probabilities, options.pipeline)
                report = verdict_report(
                    verdict, options.pipeline, self.model_info, options.include_crops
                )
                if explain:
                    report["explanations"] = self._explanations(
                        verdict.faces, face_probabilities, options.explain_faces
                    )
                self._record_metrics(context, idx, report)
            except RequestError as error:
                responses[idx] = self._error(context, idx, error.status, error.error, error.message)
                continue
            except VideoLimitError as error:
                status = 422 if error.code == "decode_timeout" else 413
                responses[idx] = self._error(context, idx, status, error.code, str(error))
                continue
            except VideoInputError as error:
                responses[idx] = self._error(context, idx, 400, "invalid_video", str(error))
                continue
            except Exception:  # a bug or an input we did not foresee: this request only
                logger.exception("deepfake: request %s failed", context.get_request_id(idx))
                responses[idx] = self._internal_error(context, idx)
                continue
            responses[idx] = {v1_key[idx]: [report]} if idx in v1_key else report
            logger.info(
                "deepfake: scored request %s: %d frames, %d faces, %s",
                context.get_request_id(idx),
                report["frames_analyzed"],
                report["faces_found"],
                report["label"],
            )
        return [json.dumps(response) for response in responses]

    def _explanations(
        self, faces: Any, probabilities: np.ndarray, count: int
    ) -> list[dict[str, Any]]:
        """Grad-CAM of the `count` most suspicious faces, most suspicious first."""
        located = [(frame, face) for frame in faces.frames for face in frame.faces]
        chosen = np.argsort(-probabilities, kind="stable")[:count]
        heatmaps = grad_cam(self.network, self.settings, [located[i][1].crop for i in chosen])
        explanations = []
        for position, heatmap in zip(chosen, heatmaps, strict=True):
            frame, face = located[position]
            explanations.append(
                {
                    "frame_index": frame.frame_index,
                    "timestamp_s": round(frame.timestamp_s, 4),
                    "box": face.box.as_list(),
                    "fake_probability": round(float(probabilities[position]), 6),
                    "method": "grad-cam",
                    "crop_png": encode_image_base64(face.crop, ".png"),
                    "heatmap_png": encode_image_base64(heatmap_grey(heatmap), ".png"),
                    "overlay_png": encode_image_base64(overlay(face.crop, heatmap), ".png"),
                }
            )
        return explanations

    def _record_metrics(self, context: Any, idx: int, report: dict[str, Any]) -> None:
        metrics = context.metrics
        request_id = context.get_request_id(idx)
        for name, value in (
            ("DeepfakeFramesDecoded", report["frames_analyzed"]),
            ("DeepfakeFacesFound", report["faces_found"]),
            ("DeepfakeNoFaceVideos", int(report["label"] == "no_face")),
            ("DeepfakeFakeVerdicts", int(report["label"] == "fake")),
        ):
            metrics.add_counter(name, value, request_id, self._dimensions())
        for stage, milliseconds in report["timing_ms"].items():
            metrics.add_time(
                f"Deepfake{stage.capitalize()}Time",
                milliseconds,
                request_id,
                "ms",
                self._dimensions(),
            )

    def _dimensions(self) -> list[Dimension]:
        # A fresh list each call: TorchServe's metric methods append to the list they are given.
        return [Dimension("ModelName", self.model_name), Dimension("Level", "Model")]

    def _error(
        self, context: Any, idx: int, status: int, error: str, message: str
    ) -> dict[str, Any]:
        context.set_response_status(status, error, idx)
        context.metrics.add_counter(
            "DeepfakeRequestErrors", 1, context.get_request_id(idx), self._dimensions()
        )
        return error_report(status, error, message)

    def _internal_error(self, context: Any, idx: int) -> dict[str, Any]:
        return self._error(
            context,
            idx,
            500,
            "internal_error",
            "the server failed on this video; the worker logged the details",
        )

    def _thread_share(self) -> int:
        """This worker's share of the cores, so N workers do not oversubscribe them."""
        return self.config.torch_threads or max(1, usable_cores() // _running_workers())

    def _share_cores(self) -> None:
        """Re-checked per batch because operators scale workers while the server runs."""
        wanted = self._thread_share()
        if wanted != self._threads:
            limit_library_threads(wanted)
            self.classifier.set_threads(wanted)
            self._threads = wanted
            logger.info("deepfake: torch threads %d (%d usable cores)", wanted, usable_cores())

    def _staged(self, pipeline: PipelineConfig) -> PipelineConfig:
        """Overlap decoding and detection with classification only with 2+ cores to this
        worker: on one, the extra threads would take turns and oversubscribe the worker's share."""
        if self._threads >= 2:
            return pipeline
        return dataclasses.replace(pipeline, overlap_stages=False)


def _verified_sha256(path: Path, recorded: str) -> str:
    sha256 = file_sha256(path)
    if sha256 != recorded:
        raise CheckpointError(
            f"{path.name} has sha256 {sha256}, the archive recorded {recorded}: "
            "the .mar is damaged; rebuild it"
        )
    return sha256


def _archived_int8_model(model_dir: Path, archived: dict[str, Any]) -> Path | None:
    """The int8 model's .xml when the archive holds one (its files checked), else None."""
    recorded = archived.get("int8", {}).get("sha256")
    if not recorded:
        return None
    for name, sha256 in recorded.items():
        _verified_sha256(model_dir / name, sha256)
    return model_dir / INT8_MODEL_NAME


def _running_workers() -> int:
    """TorchServe's Python workers for all models: children of the frontend with our command."""
    try:
        frontend = psutil.Process().parent()
        workers = [
            child
            for child in frontend.children()
            if "model_service_worker" in " ".join(child.cmdline())
        ]
    except psutil.Error:
        return 1
    return max(1, len(workers))
