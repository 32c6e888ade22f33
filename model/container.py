"""What a video file says about itself: FFmpeg's reading of its container and streams (through
PyAV), and for ISO media files (MP4, MOV) what FFmpeg does not report, read from the boxes:
the edit lists (which FFmpeg applies) and the movie header's creation and modification times.
Facts only: no score ever uses them.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av

from model.formats import open_container

# Container tags reported under their own names; any other tag goes to `tags`.
NAMED_TAGS = ("major_brand", "minor_version", "compatible_brands", "encoder", "creation_time")
MAX_TAGS = 32  # tags kept per container or stream, each value cut to MAX_TAG_CHARS
MAX_TAG_CHARS = 256
MAX_EDIT_ENTRIES = 16  # per track
# ISO media times count seconds from 1904-01-01 UTC.
MOVIE_EPOCH = datetime.datetime(1904, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Box:
    kind: bytes  # four characters, b"moov"
    start: int  # offset of the payload in the file
    size: int  # payload bytes


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The ISO media boxes between `start` and `end`, in order; stops at a box whose size
    runs past the end (a damaged file) rather than reading beyond it."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1 and offset + 16 <= end:  # a 64-bit size follows the type
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = end - offset
        if size < header or offset + size > end:
            return
        yield Box(kind, offset + header, size - header)
        offset += size


def edit_lists(data: bytes | memoryview) -> list[dict[str, Any]]:
    """Each track's edit list (moov/trak/edts/elst) in seconds: `segment_s` of the track shown,
    starting at `media_time_s` of its media (-1: an empty edit, a pause)."""
    moov = _first(iter_boxes(data), b"moov")
    if moov is None:
        return []
    movie_scale = _timescale(data, moov, b"mvhd")
    found = []
    tracks = (box for box in _children(data, moov) if box.kind == b"trak")
    for number, trak in enumerate(tracks, start=1):
        children = {box.kind: box for box in _children(data, trak)}
        if b"edts" not in children:
            continue
        mdia = children.get(b"mdia")
        media_scale = _timescale(data, mdia, b"mdhd") if mdia else None
        for elst in (b for b in _children(data, children[b"edts"]) if b.kind == b"elst"):
            entries = _edit_entries(data, elst, movie_scale, media_scale)
            found.append({"track": number, "entries": entries})
    return found


def movie_times(data: bytes | memoryview) -> dict[str, str | None]:
    """The movie header's (moov/mvhd) creation and modification times, UTC, ISO 8601; None
    where a time is 0 (unset: what FFmpeg writes unless told a creation time) or absent."""
    times: dict[str, str | None] = {"created": None, "modified": None}
    moov = _first(iter_boxes(data), b"moov")
    mvhd = moov and _first(_children(data, moov), b"mvhd")
    if mvhd is None or mvhd.size < 20:
        return times
    version = data[mvhd.start]
    layout = ">QQ" if version == 1 else ">II"
    created, modified = struct.unpack_from(layout, data, mvhd.start + 4)
    for name, seconds in (("created", created), ("modified", modified)):
        if seconds:
            moment = MOVIE_EPOCH + datetime.timedelta(seconds=seconds)
            times[name] = moment.isoformat()
    return times


def _first(boxes: Iterator[Box], kind: bytes) -> Box | None:
    return next((box for box in boxes if box.kind == kind), None)


def _children(data: bytes | memoryview, box: Box) -> Iterator[Box]:
    return iter_boxes(data, box.start, box.start + box.size)


def _timescale(data: bytes | memoryview, parent: Box, kind: bytes) -> int | None:
    """The timescale of mvhd (movie) or mdhd (media) under `parent`."""
    for box in _children(data, parent):
        if box.kind == kind and box.size >= 24:
            version = data[box.start]
            offset = box.start + (20 if version == 1 else 12)
            if offset + 4 <= box.start + box.size:
                (scale,) = struct.unpack_from(">I", data, offset)
                return scale or None
    return None


def _edit_entries(
    data: bytes | memoryview, elst: Box, movie_scale: int | None, media_scale: int | None
) -> list[dict[str, float | None]]:
    if elst.size < 8:
        return []
    version = data[elst.start]
    (count,) = struct.unpack_from(">I", data, elst.start + 4)
    layout, width = (">QqI", 20) if version == 1 else (">IiI", 12)
    entries = []
    for index in range(min(count, MAX_EDIT_ENTRIES)):
        offset = elst.start + 8 + index * width
        if offset + width > elst.start + elst.size:
            break
        duration, media_time, _rate = struct.unpack_from(layout, data, offset)
        entries.append(
            {
                "segment_s": round(duration / movie_scale, 4) if movie_scale else None,
                "media_time_s": (
                    -1.0
                    if media_time == -1
                    else round(media_time / media_scale, 4)
                    if media_scale
                    else None
                ),
            }
        )
    return entries


@dataclass
class ContainerFacts:
    """FFmpeg's reading of the file: format, its named tags, every stream, the edit lists."""

    format: str
    format_long_name: str
    tags: dict[str, str] = field(default_factory=dict)
    streams: list[dict[str, Any]] = field(default_factory=list)
    edit_lists: list[dict[str, Any]] = field(default_factory=list)
    movie_times: dict[str, str | None] = field(default_factory=dict)  # MP4/MOV mvhd box

    def as_json(self) -> dict[str, Any]:
        named = {name: self.tags.get(name) for name in NAMED_TAGS}
        others = {k: v for k, v in self.tags.items() if k not in NAMED_TAGS}
        return {
            "format": self.format,
            "format_long_name": self.format_long_name,
            **named,
            "tags": others,
            "streams": self.streams,
            "edit_lists": self.edit_lists,
            "movie_created": self.movie_times.get("created"),
            "movie_modified": self.movie_times.get("modified"),
        }


def facts_of(container: av.container.InputContainer) -> ContainerFacts:
    """What an open container says: its format and tags and each stream (edit lists, which
    need the file's bytes, are added by `with_box_facts`)."""
    return ContainerFacts(
        format=container.format.name,
        format_long_name=container.format.long_name,
        tags=_tags(container.metadata),
        streams=[_stream(stream) for stream in container.streams],
    )


def container_facts(data: bytes | bytearray | memoryview) -> ContainerFacts:
    """The facts of a file not opened yet (opening probes its streams: ~30 ms for 4K)."""
    with open_container(data) as container:
        return with_box_facts(facts_of(container), data)


def with_box_facts(facts: ContainerFacts, data: bytes | bytearray | memoryview) -> ContainerFacts:
    """`facts` with what FFmpeg does not report of an ISO media file (MP4, MOV): its edit
    lists and its movie header's creation and modification times."""
    view = memoryview(data)
    if bytes(view[4:8]) == b"ftyp":
        facts.edit_lists = edit_lists(view)
        facts.movie_times = movie_times(view)
    return facts


def _stream(stream: av.stream.Stream) -> dict[str, Any]:
    codec = stream.codec_context
    found: dict[str, Any] = {
        "index": stream.index,
        "type": stream.type,
        "codec": codec.name if codec else None,
        "profile": getattr(codec, "profile", None),
        "duration_s": (
            round(float(stream.duration * stream.time_base), 4)
            if stream.duration and stream.time_base
            else None
        ),
        "start_s": (
            round(float(stream.start_time * stream.time_base), 4)
            if stream.start_time is not None and stream.time_base
            else None
        ),
        "bit_rate": getattr(stream, "bit_rate", None) or None,  # a data stream has none
        "tags": _tags(stream.metadata),
    }
    if codec is None:  # a stream of a codec FFmpeg does not know: nothing more to say
        return found
    if stream.type == "video":
        found.update(
            width=codec.width,
            height=codec.height,
            fps=float(stream.average_rate) if stream.average_rate else None,
        )
    elif stream.type == "audio":
        found.update(sample_rate=codec.sample_rate, channels=codec.channels)
    return found


def _tags(metadata: dict[str, str]) -> dict[str, str]:
    """At most MAX_TAGS tags, each cut to MAX_TAG_CHARS: a file chooses its own tags."""
    return {
        str(key)[:MAX_TAG_CHARS]: str(value)[:MAX_TAG_CHARS]
        for key, value in list(metadata.items())[:MAX_TAGS]
    }
