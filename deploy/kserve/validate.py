"""Check InferenceService manifests against the KServe Python SDK's models, without a cluster.

    .venv-tools/bin/python deploy/kserve/validate.py deploy/kserve/inferenceservice.yaml

Each YAML file is deserialized into `kserve.V1beta1InferenceService` by the SDK's ApiClient
(the models refuse a missing required field or a value outside an enum), then serialized back.
Deserializing silently drops keys the models do not have and converts types ("2" -> 2), so any
difference between the file and its round trip is a misspelled key or a value of the wrong
type. Prints one line per file; exits 1 when any file is invalid. Runs in the tools venv
(`make tools`): no project imports.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kserve
import kubernetes.client
import yaml

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"


def _find_kubernetes_models() -> None:
    """KServe's models name Kubernetes' own as field types (V1ObjectMeta, V1Container, ...),
    but its ApiClient looks every type name up in `kserve.models` alone."""
    for name in dir(kubernetes.client.models):
        if name.startswith("V1") and not hasattr(kserve.models, name):
            setattr(kserve.models, name, getattr(kubernetes.client.models, name))


def differences(written: Any, read_back: Any, path: str = "") -> list[str]:
    """Where `read_back` (the SDK's round trip) differs from `written` (the file)."""
    if isinstance(written, dict) and isinstance(read_back, dict):
        found = []
        for key, value in written.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in read_back:
                found.append(f"{where}: not a field of the KServe/Kubernetes model (misspelled?)")
            else:
                found += differences(value, read_back[key], where)
        return found
    if isinstance(written, list) and isinstance(read_back, list) and len(written) == len(read_back):
        return [
            problem
            for index, (item, back) in enumerate(zip(written, read_back, strict=True))
            for problem in differences(item, back, f"{path}[{index}]")
        ]
    if type(written) is not type(read_back) or written != read_back:
        return [f"{path}: {written!r} is read as {read_back!r} (wrong type?)"]
    return []


def problems(manifest: Any) -> list[str]:
    """Everything wrong with one parsed manifest; empty when it is a valid InferenceService."""
    if not isinstance(manifest, dict):
        return [f"expected one YAML mapping, got {type(manifest).__name__}"]
    found = [
        f"{key} is {manifest.get(key)!r}, expected {expected!r}"
        for key, expected in (("apiVersion", API_VERSION), ("kind", KIND))
        if manifest.get(key) != expected
    ]
    client = kserve.ApiClient()
    try:
        # deserialize() reads a REST response's JSON text from `.data`.
        response = SimpleNamespace(data=json.dumps(manifest))
        service = client.deserialize(response, "V1beta1InferenceService")
    except (ValueError, TypeError, AttributeError) as error:
        return [*found, f"the SDK refuses it: {error}"]
    found += differences(manifest, client.sanitize_for_serialization(service))
    predictor = service.spec.predictor if service.spec else None
    if predictor is None:
        found.append("spec.predictor is missing")
    elif (predictor.min_replicas or 0) > (predictor.max_replicas or sys.maxsize):
        found.append("spec.predictor.minReplicas is above maxReplicas")
    return found


def main(paths: list[str]) -> int:
    if not paths:
        print(f"usage: {Path(sys.argv[0]).name} MANIFEST.yaml...", file=sys.stderr)
        return 2
    _find_kubernetes_models()
    invalid = 0
    for path in paths:
        found = problems(yaml.safe_load(Path(path).read_text()))
        if found:
            invalid += 1
            print(f"invalid: {path}: " + "; ".join(found))
        else:
            print(f"valid: {path}: an {KIND} by the kserve {version('kserve')} SDK's models")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
