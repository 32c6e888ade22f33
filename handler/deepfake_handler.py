"""TorchServe handler: TorchServe's requests in, `model.service`'s JSON out.

Only TorchServe I/O lives here: the request rows (handler/inputs.py), the KServe v1 envelope,
errors as HTTP statuses, and metrics. The detector service does the rest. A bad request gets its
own 4xx JSON; the others in the batch are answered normally and the worker lives on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import psutil
from ts.metrics.dimension import Dimension

from handler.inputs import RequestError, analysis_request, kserve_v1_instance, video_bytes
from model.config import load_config
from model.device import worker_gpu
from model.errors import (
    DecoderCrashedError,
    UnsupportedFormatError,
    VideoInputError,
    VideoLimitError,
)
from model.service import Analysis, DetectorService
from protocol.wire import error_body

logger = logging.getLogger(__name__)

COUNTERS = {  # metric -> what it counts in one scored video (handler/metrics.yaml)
    "DeepfakeFramesDecoded": lambda analysis: analysis.body["frames_analyzed"],
    "DeepfakeFacesFound": lambda analysis: analysis.body["faces_found"],
    "DeepfakeNoFaceVideos": lambda analysis: int(analysis.label == "no_face"),
    "DeepfakeFakeVerdicts": lambda analysis: int(analysis.label == "fake"),
}


class DeepfakeHandler:
    """TorchServe's entry points: `initialize(context)` once per worker, `handle` per batch."""

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        self.service = DetectorService.from_archive(
            Path(properties["model_dir"]),
            context.manifest["model"]["serializedFile"],
            load_config(context.model_yaml_config),
            running_workers(),
            # Set only where config.properties gives the model GPUs (number_of_gpu).
            worker_gpu(properties.get("gpu_id")),
        )
        self.model_name = context.model_name
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        """One JSON string per request, in order; statuses set per request on `context`."""
        self.service.share_cores(running_workers())
        return [json.dumps(self._answer(row, idx, context)) for idx, row in enumerate(data)]

    def _answer(self, row: dict[str, Any], idx: int, context: Any) -> dict[str, Any]:
        context.set_response_content_type(idx, "application/json")
        request_id = context.get_request_id(idx)
        try:
            explain = context.get_request_header(idx, "explain") == "True"
            headers = context.get_all_request_header(idx)
            # A KServe v1 body is JSON: its Content-Type says nothing of the video inside.
            instance = kserve_v1_instance(row)
            video = video_bytes(instance or row, None if instance else headers)
            request = analysis_request(instance or row, headers, self.service.config, explain)
            analysis = self.service.analyze(video, request)
        except RequestError as error:
            return self._error(context, idx, error.status, error.error, error.message)
        except UnsupportedFormatError as error:
            return self._error(context, idx, 415, "unsupported_format", str(error))
        except VideoLimitError as error:
            return self._error(context, idx, error.status, error.code, str(error))
        except DecoderCrashedError as error:
            return self._error(context, idx, 422, "decoder_crashed", str(error))
        except VideoInputError as error:
            return self._error(context, idx, 400, "invalid_video", str(error))
        except Exception:  # a bug or an input we did not foresee: this request only
            logger.exception("deepfake: request %s failed", request_id)
            message = "the server failed on this video; the worker logged the details"
            return self._error(context, idx, 500, "internal_error", message)
        self._record(context.metrics, request_id, analysis)
        logger.info(
            "deepfake: scored request %s: %d frames, %d faces, %s",
            request_id,
            analysis.body["frames_analyzed"],
            analysis.body["faces_found"],
            analysis.label,
        )
        if instance is None:
            return analysis.body
        return {("explanations" if explain else "predictions"): [analysis.body]}

    def _record(self, metrics: Any, request_id: str, analysis: Analysis) -> None:
        for name, count in COUNTERS.items():
            metrics.add_counter(name, count(analysis), request_id, self._dimensions())
        for stage, milliseconds in analysis.verdict.timing_ms.items():
            name = f"Deepfake{stage.capitalize()}Time"
            metrics.add_time(name, milliseconds, request_id, "ms", self._dimensions())

    def _error(self, context: Any, idx: int, status: int, error: str, message: str) -> dict:
        context.set_response_status(status, error, idx)
        request_id = context.get_request_id(idx)
        context.metrics.add_counter("DeepfakeRequestErrors", 1, request_id, self._dimensions())
        return error_body(status, error, message)

    def _dimensions(self) -> list[Dimension]:
        # A fresh list each call: TorchServe's metric methods append to the list they are given.
        return [Dimension("ModelName", self.model_name), Dimension("Level", "Model")]


def running_workers() -> int:
    """TorchServe's Python workers for all models: children of the frontend with our command."""
    try:
        frontend = psutil.Process().parent()
        commands = [" ".join(child.cmdline()) for child in frontend.children()]
    except psutil.Error:
        return 1
    return max(1, sum("model_service_worker" in command for command in commands))
