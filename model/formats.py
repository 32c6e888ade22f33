"""Which containers an upload may be, recognised from its first bytes before FFmpeg sees it.

FFmpeg knows hundreds of demuxers, and some open other files or URLs by name (concat scripts,
HLS and other playlists, image sequences, `subfile:`, a data reference in a MOV). An upload is
untrusted, so it is opened only as one of the containers the API documents, by that demuxer
alone (no probing), with `format_whitelist` naming only those demuxers (for the nested opens
some of them make, e.g. AVI's GAB2 subtitle streams) and an empty `protocol_whitelist` (the
bytes come from memory; no nested open may reach a file, a pipe or the network).

Accepted, and why each:
- MP4 / MOV / 3GP (ISO base media, FFmpeg's `mov` demuxer): what phones, cameras, editors and
  every platform export; it also carries Content Credentials (C2PA).
- Matroska / WebM (`matroska`): what browsers record (MediaRecorder) and many downloads are.
- AVI (`avi`): older cameras and archives still hold it.
Anything else (MPEG-TS, FLV, Ogg, ASF/WMV, raw streams, images, playlists, scripts) can be
remuxed into MP4 without re-encoding: `ffmpeg -i in.ts -c copy out.mp4`.
"""

from __future__ import annotations

import io
import mmap
from dataclasses import dataclass
from pathlib import Path

import av

from model.errors import UnsupportedFormatError, VideoInputError

# The bytes a container is recognised from; a file shorter than the shortest header is no video.
HEAD_BYTES = 189  # an MPEG-TS sync byte repeats at 188
MIN_VIDEO_BYTES = 12


@dataclass(frozen=True)
class ContainerFormat:
    name: str  # what the API calls it
    demuxer: str  # the one FFmpeg demuxer that may open it, by its full name (as it reports it)


ISO_MEDIA = ContainerFormat("MP4/MOV/3GP", "mov,mp4,m4a,3gp,3g2,mj2")
MATROSKA = ContainerFormat("Matroska/WebM", "matroska,webm")
AVI = ContainerFormat("AVI", "avi")
ACCEPTED = (ISO_MEDIA, MATROSKA, AVI)
ACCEPTED_NAMES = ", ".join(f.name for f in ACCEPTED)

# FFmpeg options every open of untrusted bytes gets (AVFormatContext options).
DEMUXER_OPTIONS = {
    "format_whitelist": ",".join(f.demuxer for f in ACCEPTED),
    "protocol_whitelist": "",
    "enable_drefs": "0",  # mov: never follow a data reference to another file (the default)
}

# Top-level ISO boxes a QuickTime/MP4 file may open with (FFmpeg's mov probe looks for these).
_ISO_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# `ftyp` brands of still-image files in the same box format (HEIF, AVIF): images, not videos.
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
# Refused formats named in the answer, so a client learns what it actually sent.
_NAMED_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"ffconcat", "an FFmpeg concat script"),
    (b"#EXTM3U", "an M3U/HLS playlist"),
    (b"FLV\x01", "an FLV file"),
    (b"OggS", "an Ogg file"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "an ASF/WMV file"),
    (b"\x00\x00\x01\xba", "an MPEG program stream"),
    (b"\x00\x00\x00\x01", "a raw H.264/HEVC stream"),
    (b"ID3", "an MP3 audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


def mapped(
    source: bytes | bytearray | memoryview | Path,
) -> bytes | bytearray | memoryview | mmap.mmap:
    """The upload's bytes: a file is mapped into memory (read as bytes, never through FFmpeg's
    file protocol, which the empty whitelist leaves closed)."""
    if isinstance(source, Path):
        with source.open("rb") as file:
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    return source


def open_container(source: bytes | bytearray | memoryview | Path) -> av.container.InputContainer:
    """`source` opened by the one demuxer its first bytes name, with DEMUXER_OPTIONS: an
    UnsupportedFormatError before FFmpeg reads it when it is no accepted container, a
    VideoInputError when FFmpeg cannot open what starts like one (truncated, damaged)."""
    data = mapped(source)
    accepted = container_format(data[:HEAD_BYTES])
    readable = data if isinstance(data, mmap.mmap) else io.BytesIO(data)
    try:
        return av.open(
            readable,
            mode="r",
            format=accepted.demuxer,
            container_options=DEMUXER_OPTIONS,
            metadata_errors="ignore",
        )
    except av.FFmpegError as error:
        described = describe(error)
        if accepted is ISO_MEDIA:
            raise VideoInputError(
                "MP4/MOV file is truncated or damaged: it starts like one, but FFmpeg cannot "
                f"read its index (the moov box) ({described}); upload the whole file again"
            ) from error
        raise VideoInputError(
            f"{accepted.name} file is truncated or damaged: it starts like one, but FFmpeg "
            f"cannot open it ({described})"
        ) from error


def describe(error: av.FFmpegError) -> str:
    """FFmpeg's words for an error, for a message a user reads."""
    return error.strerror or type(error).__name__


def container_format(head: bytes | bytearray | memoryview) -> ContainerFormat:
    """The accepted container `head` (a file's first bytes) opens, else an
    UnsupportedFormatError naming what it looks like and what is accepted."""
    head = bytes(head[:HEAD_BYTES])
    if len(head) < MIN_VIDEO_BYTES:
        raise VideoInputError(
            f"not a video file: too short to be one ({len(head)} bytes); "
            f"send a video such as {ACCEPTED_NAMES}"
        )
    box = head[4:8]
    if box == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        raise _refused(f"a HEIF/AVIF image (brand {head[8:12].decode('ascii')})")
    if box in _ISO_FIRST_BOXES:
        return ISO_MEDIA
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if head.startswith(b"RIFF"):
        kind = head[8:12]
        if kind == b"AVI ":
            return AVI
        described = kind.decode("latin-1")
        raise _refused(f"a RIFF file of kind {described!r} (e.g. WAVE audio, WebP image)")
    for signature, described in _NAMED_SIGNATURES:
        if head.startswith(signature):
            raise _refused(described)
    if len(head) > 188 and head[0] == head[188] == 0x47:
        raise _refused("an MPEG transport stream")
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        raise _refused("text")
    raise _refused("bytes of no known video container")


def _refused(detected: str) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        f"not a video file this server opens: the upload looks like {detected}; accepted "
        f"containers: {ACCEPTED_NAMES} (remux another video without re-encoding: "
        "ffmpeg -i in -c copy out.mp4)",
        detected=detected,
    )
