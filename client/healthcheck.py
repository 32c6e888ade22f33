"""Container health check: exit 0 once the model has a READY worker, 1 otherwise.

    python -m client.healthcheck [--management-url http://127.0.0.1:8081] [--model deepfake]

`/ping` says Healthy as soon as the frontend listens, before any worker has loaded the model, so
this asks the management API for the model's workers instead. Standard library only (Docker
runs it every 30 s): not even `requests`.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from protocol.wire import KEY_FILE, MANAGEMENT_URL, MODEL_NAME


def read_keys(key_file: Path) -> dict[str, str]:
    """{"inference": ..., "management": ..., "API": ...} from TorchServe's key_file.json."""
    try:
        stored = json.loads(Path(key_file).read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{key_file} not found: TorchServe writes it in the folder it was started from "
            "(token authorization); pass --key-file, or --no-auth if it is off"
        ) from error
    return {kind: entry["key"] for kind, entry in stored.items()}


def ready_worker_count(
    management_url: str, model: str, key_file: Path | None, timeout_s: float = 5.0
) -> int:
    """READY workers over all versions of `model`; raises OSError/ValueError if it cannot ask."""
    request = urllib.request.Request(f"{management_url}/models/{model}")
    if key_file is not None:
        request.add_header("Authorization", f"Bearer {read_keys(key_file)['management']}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return count_ready(json.load(response))


def count_ready(versions: list[dict[str, Any]]) -> int:
    """READY workers in the management API's answer for a model (a list of its versions)."""
    return sum(
        worker.get("status") == "READY"
        for version in versions
        for worker in version.get("workers", [])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--management-url", default=MANAGEMENT_URL)
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--key-file", type=Path, default=Path(KEY_FILE))
    parser.add_argument("--no-auth", action="store_true", help="token authorization is off")
    args = parser.parse_args(argv)
    try:
        ready = ready_worker_count(
            args.management_url, args.model, None if args.no_auth else args.key_file
        )
    except (OSError, ValueError, KeyError) as error:  # URLError and HTTPError are OSErrors
        print(f"healthcheck: cannot ask {args.management_url}: {error}", file=sys.stderr)
        return 1
    print(f"healthcheck: {args.model} has {ready} READY worker(s)")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
