"""A Python client of a running deepfake-serve TorchServe: inference, management, metrics.

Reads the keys TorchServe wrote to `key_file.json` (token authorization) and, when the server
says the inference key expired, renews it with the API key and retries once. The command line
is `python -m client` (client/__main__.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from client.healthcheck import count_ready, read_keys
from protocol.wire import (
    INFERENCE_URL,
    KEY_FILE,
    MANAGEMENT_URL,
    METRICS_URL,
    MODEL_NAME,
    option_headers,
)


class ServerError(Exception):
    """The server answered with an error; `status` and `body` are what it sent."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status} from {url}: {message or '(empty body)'}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class ServerAddress:
    inference_url: str = INFERENCE_URL
    management_url: str = MANAGEMENT_URL
    metrics_url: str = METRICS_URL
    key_file: Path | None = Path(KEY_FILE)  # None: token authorization is off
    model: str = MODEL_NAME


class DeepfakeClient:
    def __init__(self, address: ServerAddress = ServerAddress(), timeout_s: float = 600.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self._keys: dict[str, str] | None = None

    # Inference API ---------------------------------------------------------------------------

    def predict(
        self, video: Path | bytes, options: Mapping[str, Any] | None = None, multipart: bool = False
    ) -> dict[str, Any]:
        """The verdict report for one video (schema in docs/api.md)."""
        return self._post_video("predictions", video, options, multipart)

    def explain(self, video: Path | bytes, options: Mapping[str, Any] | None = None) -> dict:
        """The verdict report plus `explanations`: Grad-CAM of the most suspicious faces."""
        return self._post_video("explanations", video, options, multipart=False)

    def _post_video(
        self, route: str, video: Path | bytes, options: Mapping[str, Any] | None, multipart: bool
    ) -> dict[str, Any]:
        data = Path(video).read_bytes() if isinstance(video, (str, Path)) else video
        url = f"{self.address.inference_url}/{route}/{self.address.model}"
        headers = option_headers(options or {})
        if multipart:
            send = {"files": {"data": ("video", data, "application/octet-stream")}}
        else:
            send = {"data": data}
            headers["Content-Type"] = "application/octet-stream"
        return self._request("POST", url, "inference", headers=headers, **send)

    def ping(self) -> dict[str, Any]:
        return self._request("GET", f"{self.address.inference_url}/ping", "inference")

    # Management API --------------------------------------------------------------------------

    def model_status(self) -> list[dict[str, Any]]:
        url = f"{self.address.management_url}/models/{self.address.model}"
        return self._request("GET", url, "management")

    def ready_workers(self) -> int:
        try:
            versions = self.model_status()
        except (requests.ConnectionError, ServerError, FileNotFoundError, json.JSONDecodeError):
            return 0  # not listening yet, or key_file.json not written yet
        return count_ready(versions)

    def wait_ready(self, timeout_s: float = 300.0, workers: int = 1) -> None:
        """Until `workers` workers are READY (`/ping` says Healthy before any worker is up)."""
        deadline = time.monotonic() + timeout_s
        while self.ready_workers() < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.address.model} has no {workers} READY worker(s) after {timeout_s:.0f} s"
                    f" at {self.address.management_url}; see logs/model_log.log"
                )
            time.sleep(1.0)
            self._keys = None  # TorchServe writes key_file.json once it is listening

    def scale(self, min_workers: int) -> dict[str, Any]:
        url = f"{self.address.management_url}/models/{self.address.model}"
        params = {"min_worker": str(min_workers), "synchronous": "true"}
        return self._request("PUT", url, "management", params=params)

    def set_default_version(self, version: str) -> dict[str, Any]:
        url = f"{self.address.management_url}/models/{self.address.model}/{version}/set-default"
        return self._request("PUT", url, "management")

    def renew_key(self, kind: str = "inference") -> None:
        """Ask TorchServe for a new `kind` key (it rewrites key_file.json) and use it."""
        url = f"{self.address.management_url}/token"
        response = self.session.post(
            url, params={"type": kind}, headers=self.auth_headers("API"), timeout=30
        )
        if response.status_code != 200:
            raise ServerError(response.status_code, _body(response), url)
        self._keys = None

    def metrics(self) -> str:
        response = self.session.get(f"{self.address.metrics_url}/metrics", timeout=30)
        response.raise_for_status()
        return response.text

    # Plumbing --------------------------------------------------------------------------------

    def _request(
        self, method: str, url: str, key_kind: str, headers: dict | None = None, **kwargs: Any
    ) -> Any:
        for attempt in range(2):
            response = self.session.request(
                method,
                url,
                headers={**(headers or {}), **self.auth_headers(key_kind)},
                timeout=self.timeout_s,
                **kwargs,
            )
            if attempt == 0 and self.address.key_file is not None and _key_rejected(response):
                self.renew_key(key_kind)  # expired (60 min by default) or renewed elsewhere
                continue
            break
        body = _body(response)
        if response.status_code >= 400:
            raise ServerError(response.status_code, body, url)
        return body

    def auth_headers(self, kind: str) -> dict[str, str]:
        """The Authorization header for `kind` ("inference", "management", "API"); none when
        token authorization is off."""
        if self.address.key_file is None:
            return {}
        if self._keys is None:
            self._keys = read_keys(self.address.key_file)
        return {"Authorization": f"Bearer {self._keys[kind]}"}


def _key_rejected(response: requests.Response) -> bool:
    """TorchServe answers a missing, wrong or expired key with 400/401 InvalidKeyException."""
    return response.status_code in (400, 401) and "InvalidKeyException" in response.text


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
