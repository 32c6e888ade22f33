"""The page's settings, the options its form sends and its errors in words: everything of the
web page that needs no Gradio (`ui/app.py` lays the page out with these)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from client.api import DeepfakeClient, ServerAddress, ServerError
from deploy.ts_config import read_properties
from protocol.wire import HOST, INFERENCE_URL, KEY_FILE, MANAGEMENT_URL, find_videos

REPO = Path(__file__).resolve().parent.parent
SERVER_DEFAULT = "server default"
FRAMES, INTERVAL = "N frames spread over the video", "every N-th frame"
BASE64_FIELDS = ("crop_jpeg", "crop_png", "heatmap_png", "overlay_png")


@dataclass(frozen=True)
class UiConfig:
    host: str = HOST
    port: int = 7860
    inference_url: str = INFERENCE_URL
    management_url: str = MANAGEMENT_URL
    key_file: Path = Path(KEY_FILE)  # TorchServe's token file
    auth: bool = field(default=True, metadata={"help": "--no-auth: the server's token auth is off"})
    ts_config: Path = REPO / "config.properties"  # its max_request_size caps uploads here
    samples: Path | None = None  # a folder of videos offered as examples (`make ui` passes one)
    timeout_s: float = 600.0

    def client(self) -> DeepfakeClient:
        address = ServerAddress(
            inference_url=self.inference_url,
            management_url=self.management_url,
            key_file=self.key_file if self.auth else None,
        )
        return DeepfakeClient(address, timeout_s=self.timeout_s)

    def max_upload_bytes(self) -> int:
        """TorchServe's max_request_size (its default 6.5 MB when the config has none)."""
        properties = read_properties(self.ts_config.read_text())
        return int(properties.get("max_request_size", 6553500))

    def sample_videos(self) -> list[str]:
        if self.samples is None or not self.samples.is_dir():
            return []
        return [str(path) for path in find_videos([self.samples])]


def request_options(mode: str, amount: float | None, aggregation: str) -> dict[str, Any]:
    """The page's option controls as the server's request options."""
    options: dict[str, Any] = {}
    if mode == FRAMES and amount:
        options["frames"] = int(amount)
    elif mode == INTERVAL and amount:
        options["interval"] = int(amount)
    if aggregation != SERVER_DEFAULT:
        options["aggregation"] = aggregation
    return options


def failure_message(error: Exception, config: UiConfig) -> str:
    """What went wrong, in words a user can act on (never a traceback)."""
    if isinstance(error, ServerError):
        body = error.body if isinstance(error.body, Mapping) else {}
        if error.status in (400, 401) and "InvalidKeyException" in str(error.body):
            return (
                "The analysis server refused this page's access key, even after renewing it. "
                "Restart the page (`make ui`) from the folder where TorchServe was started, so "
                "it reads the current key_file.json."
            )
        if error.status == 500:
            return "The analysis server failed on this video (its log has the details)."
        if error.status == 503:
            return "The analysis server is busy or still loading the model: try again shortly."
        if error.status == 413 and not body:
            return "This file is larger than the server accepts (max_request_size)."
        reason = body.get("message") or str(error.body)[:300]
        return f"The server could not analyse this file: {reason}"
    if isinstance(error, requests.Timeout):
        return f"The analysis server did not answer within {config.timeout_s:.0f} s."
    if isinstance(error, requests.ConnectionError):
        return (
            f"The analysis server is not reachable at {config.inference_url}. Is TorchServe "
            "running? Start it with `make serve`."
        )
    if isinstance(error, FileNotFoundError):
        return str(error)
    raise error


def readable_json(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report with base64 images shortened, so the raw JSON stays readable."""
    shown = copy.deepcopy(dict(report))

    def shorten(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in BASE64_FIELDS and isinstance(value, str):
                    node[key] = f"<base64 image, {len(value)} characters>"
                else:
                    shorten(value)
        elif isinstance(node, list):
            for item in node:
                shorten(item)

    shorten(shown)
    return shown
