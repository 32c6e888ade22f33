"""Make small test videos with PyAV's encoders, in memory, from arrays the tests choose."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from fractions import Fraction

import av
import cv2
import matplotlib.cbook
import numpy as np


def grace_hopper_rgb() -> np.ndarray:
    """(600, 512, 3) uint8 portrait shipped with matplotlib (US Navy photo, public domain)."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def blank_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Frames of flat grey that differ per frame, so each encodes as a real picture."""
    return [np.full((height, width, 3), 40 + (i * 7) % 180, dtype=np.uint8) for i in range(count)]


def encode_video(
    frames: Sequence[np.ndarray],
    fps: int = 25,
    container: str = "mp4",
    codec: str = "libx264",
    rotation: int = 0,
    faststart: bool = False,
    frame_times_s: Sequence[float] | None = None,
    crf: int | None = None,
    audio_seconds: float = 0.0,
    metadata: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
) -> bytes:
    """Encode RGB frames; `frame_times_s` gives each frame's time (variable frame rate); `crf`
    is x264's quality (23 its default, FaceForensics++'s c23; 40 their low-quality c40);
    `audio_seconds` of a tone go in an AAC stream beside the video; `metadata`: container tags
    (such as `creation_time`); `codec_options`: the encoder's own (x264's `g`, `bf`, ...)."""
    # A real file, not BytesIO: faststart rewrites the file in a second pass.
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/video.{container}"
        options = {"movflags": "+faststart"} if faststart else {}
        with av.open(path, mode="w", format=container, options=options) as output:
            output.metadata.update(metadata or {})
            stream = output.add_stream(codec, rate=fps)
            height, width = frames[0].shape[:2]
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"  # MJPEG: full range
            encoder_options = dict(codec_options or {})
            if crf is not None:
                encoder_options["crf"] = str(crf)
            stream.options = encoder_options
            if frame_times_s is not None:
                stream.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                stream.set_display_rotation(rotation)
            audio = _tone_stream(output) if audio_seconds else None
            for index, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                if frame_times_s is not None:
                    frame.pts = round(frame_times_s[index] * 1000)
                    frame.time_base = Fraction(1, 1000)
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
            if audio is not None:
                _write_tone(output, audio, audio_seconds)
        with open(path, "rb") as file:
            return file.read()


def encode_audio_only(seconds: float = 1.0) -> bytes:
    """An M4A-style MP4 holding one AAC stream of a sine tone and no video."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        _write_tone(output, _tone_stream(output), seconds)
    return buffer.getvalue()


def _tone_stream(output: av.container.OutputContainer, rate: int = 16000) -> av.AudioStream:
    stream = output.add_stream("aac", rate=rate)
    stream.layout = "mono"
    return stream


def _write_tone(output: av.container.OutputContainer, stream: av.AudioStream, seconds: float):
    """A 440 Hz tone of `seconds` into the mono AAC `stream`."""
    rate = stream.rate
    samples = int(seconds * rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(tone[np.newaxis, :], format="fltp", layout="mono")
    frame.sample_rate = rate
    output.mux(stream.encode(frame))
    output.mux(stream.encode(None))


def encode_image(rgb: np.ndarray, extension: str) -> bytes:
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()
