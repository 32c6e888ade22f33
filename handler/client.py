"""Talk to a running deepfake-serve TorchServe: score videos, print verdicts, draw contact sheets.

    python -m handler.client VIDEO_OR_FOLDER... [--sheet sheet.png] [--output results.txt]
    python -m handler.client --wait          # block until the model has a READY worker

Reads the keys TorchServe wrote to `key_file.json` (token authorization) and, when the server
says the inference key expired, renews it with the API key and retries once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from handler.healthcheck import DEFAULT_MANAGEMENT_URL, MODEL_NAME, count_ready, read_keys
from handler.options import OPTION_HEADER_PREFIX
from handler.sheet import write_contact_sheet
from model.report import result_line
from model.video import VIDEO_SUFFIXES

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_METRICS_URL = "http://127.0.0.1:8082"


class ServerError(Exception):
    """The server answered with an error; `status` and `body` are what it sent."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status} from {url}: {message or '(empty body)'}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class ServerAddress:
    inference_url: str = DEFAULT_INFERENCE_URL
    management_url: str = DEFAULT_MANAGEMENT_URL
    metrics_url: str = DEFAULT_METRICS_URL
    key_file: Path | None = Path("key_file.json")  # None: token authorization is off
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
        """The verdict report for one video (schema in README "Response schema")."""
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
            url, params={"type": kind}, headers=self._auth("API"), timeout=30
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
                headers={**(headers or {}), **self._auth(key_kind)},
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

    def _auth(self, kind: str) -> dict[str, str]:
        if self.address.key_file is None:
            return {}
        if self._keys is None:
            self._keys = read_keys(self.address.key_file)
        return {"Authorization": f"Bearer {self._keys[kind]}"}


def option_headers(options: Mapping[str, Any]) -> dict[str, str]:
    """{"frames": 8} -> {"X-Deepfake-Frames": "8"}: how options travel (handler/options.py)."""
    return {
        OPTION_HEADER_PREFIX.title() + name.replace("_", "-").title(): str(value)
        for name, value in options.items()
    }


def _key_rejected(response: requests.Response) -> bool:
    """TorchServe answers a missing, wrong or expired key with 400/401 InvalidKeyException."""
    return response.status_code in (400, 401) and "InvalidKeyException" in response.text


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def video_paths(inputs: list[Path]) -> list[Path]:
    """Files as given; folders walked for files with a video suffix, sorted."""
    paths = []
    for path in inputs:
        if path.is_dir():
            paths += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
            )
        else:
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="video files or folders")
    parser.add_argument("--inference-url", default=DEFAULT_INFERENCE_URL)
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL)
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--no-auth", action="store_true", help="token authorization is off")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--wait", action="store_true", help="first wait for a READY worker")
    parser.add_argument("--wait-timeout", type=float, default=300.0)
    parser.add_argument("--frames", type=int, help="analyse N evenly spaced frames")
    parser.add_argument("--interval", type=int, help="analyse every N-th frame")
    parser.add_argument("--aggregation", help="mean, confident or face_max")
    parser.add_argument("--output", type=Path, help="also write results.txt-style lines here")
    parser.add_argument("--json", type=Path, help="write every full response to this file")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG of the faces")
    args = parser.parse_args(argv)

    address = ServerAddress(
        inference_url=args.inference_url,
        management_url=args.management_url,
        key_file=None if args.no_auth else args.key_file,
        model=args.model,
    )
    client = DeepfakeClient(address)
    if args.wait:
        try:
            client.wait_ready(args.wait_timeout)
        except TimeoutError as error:
            print(f"client: {error}", file=sys.stderr)
            return 1
        print(f"client: {args.model} is ready at {args.inference_url}")
    paths = video_paths(args.videos)
    if not paths:
        return 0 if args.wait else _usage_error(parser)
    options = {
        name: value
        for name, value in (
            ("frames", args.frames),
            ("interval", args.interval),
            ("aggregation", args.aggregation),
            ("crops", "true" if args.sheet else None),
        )
        if value is not None
    }
    reports, lines, failures = {}, [], 0
    for path in paths:
        try:
            report = client.predict(path, options)
        except ServerError as error:
            lines.append(result_line(str(path), None, None, str(error)))
            failures += 1
        else:
            reports[str(path)] = report
            lines.append(result_line(str(path), report["label"], report["fake_probability"]))
        print(lines[-1], flush=True)
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    if args.sheet and reports:
        write_contact_sheet(reports, args.sheet)
        print(f"client: contact sheet {args.sheet}")
    print(f"client: {len(paths) - failures}/{len(paths)} videos scored")
    return 1 if failures == len(paths) else 0


def _usage_error(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("client: give video files or folders, or --wait", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
