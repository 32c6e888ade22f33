"""A video's provenance beside its verdict, never part of it: its Content Credentials (C2PA,
model/credentials.py) and what its container says about itself (model/container.py)."""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from model.container import ContainerFacts, container_facts, with_box_facts
from model.credentials import ContentCredentials, CredentialsConfig, CredentialsReader
from model.video import VideoSource


@dataclass
class Provenance:
    credentials: ContentCredentials | None  # None where the server does not read them
    container: ContainerFacts | None  # None where FFmpeg could not list what it decoded
    container_error: str | None = None

    def to_message(self) -> dict[str, Any]:
        """Its fields as JSON-able values, for `from_message` in another process."""
        return asdict(self)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Provenance:
        """Back from `to_message`; a TypeError or ValueError for anything else."""
        credentials, container = message["credentials"], message["container"]
        return cls(
            ContentCredentials(**credentials) if credentials is not None else None,
            ContainerFacts(**container) if container is not None else None,
            message.get("container_error"),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "content_credentials": self.credentials.as_json() if self.credentials else None,
            "container": self.container.as_json() if self.container else None,
            **({"container_error": self.container_error} if self.container_error else {}),
        }


class ProvenanceReader:
    """One per worker: the offline C2PA context is built once."""

    def __init__(self, config: CredentialsConfig) -> None:
        self.credentials = CredentialsReader(config) if config.enabled else None

    def read(self, video: VideoSource, container: ContainerFacts | None = None) -> Provenance:
        """The provenance of a video the pipeline has already decoded (so it is one), with
        the `container` facts it read on the way (else the file is opened again here)."""
        in_memory = isinstance(video, (bytes, bytearray, memoryview))
        data = video if in_memory else Path(video).read_bytes()
        try:
            facts = container_facts(data) if container is None else with_box_facts(container, data)
        except (av.FFmpegError, struct.error, ValueError) as error:
            return Provenance(None, None, f"the container could not be listed: {error}")
        credentials = self.credentials.read(data, facts.format) if self.credentials else None
        return Provenance(credentials, facts)
