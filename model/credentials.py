"""Content Credentials (C2PA) of a video, read with c2pa-python (the reference implementation's
binding) from the bytes already in memory, and worded for a person: whether the file carries
a manifest, who signed it with what tool, what it says was done (AI generation included), and
whether it still matches the file's bytes.

Reading never fetches anything (no remote manifests, no OCSP, no network hosts); a signer is
"trusted" only against the trust anchors the operator configures. A manifest that no longer
matches its file is reported as tampered, one that cannot be parsed as unreadable: neither is
an error of the request, whose verdict is made as for any video.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.container import iter_boxes
from protocol.wire import CREDENTIAL_STATUSES

# The UUID of the box C2PA manifests live in inside ISO media files (C2PA spec, "Embedding
# manifests into BMFF-based assets").
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
# FFmpeg's demuxer names -> the media types c2pa reads; other containers (WebM, MKV) cannot
# carry an embedded manifest c2pa knows.
MEDIA_TYPES = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "avi": "video/avi"}
# IPTC digital source types that say a model made (part of) the media.
AI_SOURCE_TYPES = {
    "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "algorithmicMedia",
    "compositeSynthetic",
}
# Validation codes that mean the manifest no longer matches the bytes it was signed over.
TAMPER_CODES = ("mismatch", "hashedURI.missing")
MAX_LISTED = 32  # actions or ingredients listed


@dataclass(frozen=True)
class CredentialsConfig:
    enabled: bool = True
    # PEM file of the signers' root certificates to trust (e.g. the C2PA trust list); empty:
    # signatures are still checked, but every signer is reported as not on a trust list.
    trust_anchors: str = ""
    max_manifest_bytes: int = 8 * 2**20  # a larger manifest box is not parsed (unreadable)

    def __post_init__(self) -> None:
        if self.max_manifest_bytes < 1:
            raise ValueError(f"max_manifest_bytes must be positive, got {self.max_manifest_bytes}")


@dataclass
class ContentCredentials:
    """The manifest store's active manifest, summarised; `status` is one of
    protocol.wire.CREDENTIAL_STATUSES."""

    status: str
    summary: str  # the status in plain words
    claim_generator: str | None = None
    title: str | None = None
    signer: dict[str, str | None] | None = None  # subject, issuer, algorithm
    signed_at: str | None = None  # the trusted timestamp, when the signer had one
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    ai_generated: bool = False  # an action names an AI digital source type
    manifests: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)  # failed validation codes

    def __post_init__(self) -> None:
        if self.status not in CREDENTIAL_STATUSES:  # the wire protocol names every status
            raise ValueError(f"unknown Content Credentials status {self.status!r}")

    @property
    def present(self) -> bool:
        return self.status not in ("none", "unsupported")

    def as_json(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "status": self.status,
            "summary": self.summary,
            "claim_generator": self.claim_generator,
            "title": self.title,
            "signer": self.signer,
            "signed_at": self.signed_at,
            "ai_generated": self.ai_generated,
            "actions": self.actions,
            "ingredients": self.ingredients,
            "manifests": self.manifests,
            "problems": self.problems,
        }


class CredentialsReader:
    """Reads Content Credentials with one offline c2pa context (built once per worker)."""

    def __init__(self, config: CredentialsConfig) -> None:
        import c2pa  # imported here: only the worker reads credentials

        self._c2pa = c2pa
        self.config = config
        settings: dict[str, Any] = {
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
            "core": {"allowed_network_hosts": []},
        }
        if config.trust_anchors:  # read at worker start: a missing file stops the worker
            anchors = Path(config.trust_anchors)
            if not anchors.is_file():
                raise FileNotFoundError(f"credentials.trust_anchors: no such PEM file: {anchors}")
            settings["trust"] = {"trust_anchors": anchors.read_text()}
        self._context = c2pa.Context.from_dict(settings)

    def read(
        self, data: bytes | bytearray | memoryview, container_format: str
    ) -> ContentCredentials:
        """The credentials of a file FFmpeg read as `container_format`; never raises for
        what the file holds."""
        media_type = MEDIA_TYPES.get(container_format)
        if media_type is None:
            return ContentCredentials(
                "unsupported",
                f"Content Credentials cannot be embedded in this container ({container_format}) "
                "in a way C2PA readers know; none were looked for",
            )
        view = memoryview(data)
        too_large = _oversized_manifest(view, self.config.max_manifest_bytes)
        if too_large:
            return ContentCredentials(
                "unreadable",
                f"the file holds a Content Credentials box of {too_large / 2**20:.1f} MB, more "
                f"than the {self.config.max_manifest_bytes / 2**20:.0f} MB this server reads",
            )
        try:
            reader = self._c2pa.Reader.try_create(
                media_type, io.BytesIO(view), context=self._context
            )
            if reader is None:
                return ContentCredentials("none", "no Content Credentials: the file carries none")
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state()
        except self._c2pa.C2paError as error:
            return ContentCredentials(
                "unreadable",
                f"the file carries Content Credentials that cannot be read ({error}): treat "
                "its history as unknown",
            )
        return summarise(store, state, bool(self.config.trust_anchors))


def summarise(store: dict[str, Any], state: str | None, trust_list: bool) -> ContentCredentials:
    """The active manifest of a c2pa manifest store report, and its validation in words
    (`trust_list`: whether the server checks signers against trust anchors)."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest")) or {}
    problems = [
        {"code": str(item.get("code")), "explanation": str(item.get("explanation", ""))[:300]}
        for item in store.get("validation_status") or []
        if item.get("code") != "signingCredential.untrusted"
    ][:MAX_LISTED]
    status, summary = _status(state, problems, trust_list)
    signature = active.get("signature_info") or {}
    actions = [_action(action) for action in _actions(active)][:MAX_LISTED]
    return ContentCredentials(
        status=status,
        summary=summary,
        claim_generator=_claim_generator(active),
        title=active.get("title"),
        signer={
            "subject": signature.get("common_name"),
            "issuer": signature.get("issuer"),
            "algorithm": signature.get("alg"),
        }
        if signature
        else None,
        signed_at=signature.get("time"),
        actions=actions,
        ingredients=[
            {
                "title": ingredient.get("title"),
                "format": ingredient.get("format"),
                "relationship": ingredient.get("relationship"),
            }
            for ingredient in (active.get("ingredients") or [])[:MAX_LISTED]
        ],
        ai_generated=any(action["ai_generated"] for action in actions),
        manifests=len(manifests),
        problems=problems,
    )


def _status(state: str | None, problems: list[dict[str, str]], trust_list: bool) -> tuple[str, str]:
    if any(any(mark in p["code"] for mark in TAMPER_CODES) for p in problems):
        return "tampered", (
            "Content Credentials present, but the file was changed after it was signed: its "
            "bytes no longer match the manifest, so the history it claims is not this file's"
        )
    if problems or state == "Invalid":
        return "invalid", (
            "Content Credentials present but not valid ("
            + ", ".join(p["code"] for p in problems[:3])
            + "): do not rely on what they claim"
        )
    if state == "Trusted":
        return (
            "trusted",
            "Content Credentials valid, signed by a signer on this server's trust list",
        )
    why = (
        "the signer is not on this server's trust list"
        if trust_list
        else "this server checks signers against no trust list (credentials.trust_anchors)"
    )
    return "untrusted", (
        f"Content Credentials valid and the file unchanged since signing, but {why}: who "
        "signed it is what the certificate says, unconfirmed"
    )


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            return list((assertion.get("data") or {}).get("actions") or [])
    return []


def _action(action: dict[str, Any]) -> dict[str, Any]:
    source_type = str(action.get("digitalSourceType") or "")
    agent = action.get("softwareAgent")
    return {
        "action": action.get("action"),
        "when": action.get("when"),
        "software_agent": agent.get("name") if isinstance(agent, dict) else agent,
        "digital_source_type": source_type.rsplit("/", 1)[-1] or None,
        "ai_generated": source_type.rsplit("/", 1)[-1] in AI_SOURCE_TYPES,
    }


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info") or []
    if info and isinstance(info[0], dict):
        return " ".join(str(info[0][k]) for k in ("name", "version") if info[0].get(k))
    return manifest.get("claim_generator")


def _oversized_manifest(view: memoryview, limit: int) -> int:
    """The size of a C2PA box over `limit` at the top level of an ISO media file, else 0."""
    if bytes(view[4:8]) != b"ftyp":
        return 0
    for box in iter_boxes(view):
        if box.kind == b"uuid" and bytes(view[box.start : box.start + 16]) == C2PA_UUID:
            return box.size if box.size > limit else 0
    return 0
