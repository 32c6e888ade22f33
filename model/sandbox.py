"""The worker's side of the decoding sandbox (the decoder's side: model/sandbox_child.py).

FFmpeg parses every upload; a bug in a demuxer or decoder must not reach the process that
holds the model, the configuration and a network connection. `DecoderSandbox` keeps one small
zygote process per worker and has it fork a confined child per video; `SandboxedReader` is
that child seen from the worker, with VideoReader's interface (info, facts, sample), so the
pipeline does not know which it has. Only data comes back (JSON headers and raw RGB frames,
each checked against what was asked), never a pickle. A child that crashes, runs past its
memory or CPU limit, or keeps the worker waiting past `limits.max_decode_s` ends that
request with an error naming the cause; the worker and the zygote carry on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from model.container import ContainerFacts
from model.credentials import CredentialsConfig
from model.errors import (
    DecoderCrashedError,
    UnsupportedFormatError,
    VideoInputError,
    VideoLimitError,
)
from model.formats import mapped
from model.frame_slots import FrameSlots
from model.provenance import Provenance
from model.sandbox_child import (
    OUT_OF_MEMORY_EXIT,
    SandboxConfig,
    receive_message,
    send_json,
    send_message,
)
from model.video import (
    DEFAULT_LIMITS,
    SampledFrame,
    SamplingConfig,
    VideoInfo,
    VideoLimits,
    VideoSource,
    validated_source,
)

logger = logging.getLogger(__name__)
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding model/
_HEADER_BYTES = 2**20  # a JSON header from the child is never larger
_NO_DEADLINE_S = 3600.0  # limits.max_decode_s: null still ends a child that never answers
_REPORT_TIMEOUT_S = 10.0  # the zygote's word on how a child ended
_FRAME_SLOTS = 2  # frames the child may decode ahead of the worker (a 4K frame is 25 MB)


class DecoderSandbox:
    """One zygote per worker, started on first use and again if it dies; `open` starts a
    confined child for one video. Not thread-safe: a worker decodes one video at a time."""

    def __init__(
        self, config: SandboxConfig | None = None, credentials: CredentialsConfig | None = None
    ) -> None:
        self.config = config or SandboxConfig()
        # How the children read Content Credentials (each reads the trust anchors' file).
        self.credentials = credentials or CredentialsConfig()
        self._zygote: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._stop: weakref.finalize | None = None  # stops the zygote, at close or collection
        self._unreported: int | None = None  # a finished child whose report is not read yet
        self.confined: dict[str, bool] | None = None  # what the last child reported

    def open(
        self,
        source: VideoSource,
        threads: int = 0,
        limits: VideoLimits = DEFAULT_LIMITS,
        skip_unsampled: bool = True,
    ) -> SandboxedReader:
        video = memoryview(mapped(validated_source(source)))
        control = self._running_zygote()
        ours, theirs = socket.socketpair()
        try:
            control.settimeout(_REPORT_TIMEOUT_S)  # a zygote that hangs must not hang us
            socket.send_fds(control, [b"v"], [theirs.fileno()])
            self._take_unreported()  # the zygote answers for the last child first
            started = json.loads(receive_message(control, _HEADER_BYTES))
            control.settimeout(None)
        except (OSError, ValueError) as error:  # the zygote is gone or stuck: a server fault
            ours.close()
            code = self._zygote.poll() if self._zygote else None
            self._abandon()
            raise RuntimeError(
                f"the decoding sandbox's zygote is gone or stuck (exit code {code}; {error!r}); "
                "its stderr in the worker log says why"
            ) from error
        finally:
            theirs.close()
        return SandboxedReader(self, ours, started["pid"], video, threads, limits, skip_unsampled)

    def report_confinement(self, confined: dict[str, bool]) -> None:
        """Keep what the child says took effect; log it when it first comes or changes."""
        if confined != self.confined:
            applied = [name for name, took in confined.items() if took] or ["nothing"]
            missing = [name for name, took in confined.items() if not took]
            logger.info(
                "deepfake: decoding sandbox applies %s%s", ", ".join(applied),
                f"; the platform refused {', '.join(missing)}" if missing else "",
            )  # fmt: skip
        self.confined = confined

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid if self._zygote is not None else None

    def start(self) -> None:
        """Start the zygote now (else the first video does)."""
        self._running_zygote()

    def finished(self, pid: int) -> None:
        """Child `pid` said it was done: its report is read later (by the next `open`), so the
        request it served does not wait for the child to exit."""
        self._unreported = pid

    def ended(self, pid: int) -> dict:
        """The zygote's report on how child `pid` ended ({"exit_code"} or {"signal"})."""
        self._take_unreported()
        return self._report_on(pid)

    def _take_unreported(self) -> None:
        if self._unreported is not None:
            pid, self._unreported = self._unreported, None
            report = self._report_on(pid)
            if report.get("exit_code") != 0:  # it had sent all it had: only the log hears of it
                logger.warning("deepfake: decoding child %d ended with %s after its video", pid,
                               report)  # fmt: skip

    def _report_on(self, pid: int) -> dict:
        if self._control is None:  # the zygote was already stopped: nothing will report
            return {"signal": "unknown"}
        self._control.settimeout(_REPORT_TIMEOUT_S)
        try:
            report = json.loads(receive_message(self._control, _HEADER_BYTES))
        except (OSError, ValueError):
            self._abandon()
            return {"signal": "unknown"}
        finally:
            if self._control is not None:
                self._control.settimeout(None)
        if report.get("pid") != pid:
            self._abandon()
            return {"signal": "unknown"}
        return report

    def _abandon(self) -> None:
        """A zygote gone, stuck or out of step: killed rather than waited for (a stuck one
        would hold the request 5 s); the next video starts a fresh one."""
        if self._zygote is not None and self._zygote.poll() is None:
            self._zygote.kill()
        self.close()

    def close(self) -> None:
        """Stop the zygote (the next video starts a new one)."""
        if self._stop is not None:
            self._stop()
        self._zygote, self._control, self._stop = None, None, None
        self._unreported = None

    def _running_zygote(self) -> socket.socket:
        if self._zygote is not None and self._zygote.poll() is None and self._control:
            return self._control
        self.close()
        ours, theirs = socket.socketpair()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # The worker's own PYTHONPATH too: packages installed with `pip --target` live there.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")])
            ),
            # One thread in numpy's BLAS: the zygote forks, and threads do not survive a fork.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into the model folder
        }
        command = [sys.executable, "-m", "model.sandbox_child"]
        credentials = asdict(self.credentials)
        if credentials["trust_anchors"]:  # the zygote runs in another folder
            credentials["trust_anchors"] = str(Path(credentials["trust_anchors"]).resolve())
        limits = [str(self.config.memory_mb), str(self.config.cpu_s), str(theirs.fileno())]
        limits.append(json.dumps(credentials))
        self._zygote = subprocess.Popen(
            command + limits,
            pass_fds=[theirs.fileno()],
            env=environment,  # none of the worker's credentials
            cwd=_PACKAGE_ROOT,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._control = ours
        self._stop = weakref.finalize(self, _stop_zygote, self._zygote, ours)
        return ours


class SandboxedReader:
    """A video decoded by a confined child: VideoReader's `info`, `facts` and `sample()`."""

    def __init__(
        self,
        sandbox: DecoderSandbox,
        channel: socket.socket,
        pid: int,
        video: bytes | memoryview,
        threads: int,
        limits: VideoLimits,
        skip_unsampled: bool,
    ) -> None:
        self._sandbox, self._channel = sandbox, channel
        self.pid = pid  # the decoding child's
        self._limits = limits
        # Counts only the time the worker waits for the child, as VideoReader's decode time.
        self._wait_left_s = limits.max_decode_s or _NO_DEADLINE_S
        self._finished = False  # the child said done, or an error: it exits by itself
        self._done = False  # it said done: it sent every frame
        self._report: dict | None = None  # the zygote's word on how the child ended
        self.frames_decoded = 0
        try:
            request = {
                "video_bytes": len(video),
                "threads": threads,
                "limits": asdict(limits),
                "skip_unsampled": skip_unsampled,
            }
            send_json(channel, request)
            send_message(channel, video)
            opened = self._receive_json()
            try:
                self.info = VideoInfo(**opened["info"])
                self.facts = ContainerFacts(**opened["facts"])
                self.provenance = Provenance.from_message(opened["provenance"])
                sandbox.report_confinement(dict(opened["confined"]))
            except (KeyError, TypeError, ValueError) as error:
                raise self._crashed(f"sent a malformed header: {error}") from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SandboxedReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def sample(self, sampling: SamplingConfig) -> Iterator[SampledFrame]:
        height, width = self.info.height, self.info.width
        with FrameSlots.create(height * width * 3, _FRAME_SLOTS) as slots:
            self._send(lambda: socket.send_fds(self._channel, [b"m"], [slots.fd]))
            order = {"sampling": asdict(sampling), "slots": slots.count}
            self._send(lambda: send_json(self._channel, order))
            while True:
                message = self._receive_json()
                try:
                    if message["kind"] == "done":
                        self.frames_decoded = int(message["frames_decoded"])
                        self._finished = self._done = True
                        return
                    index, timestamp_s = int(message["index"]), float(message["timestamp_s"])
                    rgb = slots.read(int(message["slot"]), height, width)
                except (KeyError, TypeError, ValueError) as error:
                    raise self._crashed(f"sent a malformed header: {error}") from None
                # Its slot is free again. A child that sent its last frame may be gone already:
                # then nothing waits for this, and whatever it sent after is still read.
                with contextlib.suppress(OSError):
                    self._channel.sendall(b"\x01")
                yield SampledFrame(index, timestamp_s, rgb)

    def close(self) -> None:
        self._end()

    def _end(self) -> dict:
        """Close the channel, end the child unless it finished, and take the zygote's report
        (once)."""
        if self._report is None:
            self._channel.close()
            if self._finished and self._done:
                self._sandbox.finished(self.pid)
                self._report = {"exit_code": 0}
                return self._report
            if not self._finished:
                _kill(self.pid)  # a request that failed or stopped early: the child goes too
            self._report = self._sandbox.ended(self.pid)
        return self._report

    def _send(self, send: Callable[[], object]) -> None:
        try:
            send()
        except OSError as error:  # the child is gone
            raise self._crashed(str(error)) from None

    def _receive_json(self) -> dict:
        message = json.loads(self._receive(_HEADER_BYTES))
        if message.get("kind") == "error":
            self._finished = True
            raise _error_from(message)
        return message

    def _receive(self, max_bytes: int) -> bytes | bytearray:
        started = time.perf_counter()
        self._channel.settimeout(max(self._wait_left_s, 0.001))
        try:
            return receive_message(self._channel, max_bytes)
        except TimeoutError:
            _kill(self.pid)
            raise VideoLimitError(
                f"decoding took longer than {self._limits.max_decode_s or _NO_DEADLINE_S:g} s",
                code="decode_timeout",
            ) from None
        except (ConnectionError, ValueError) as error:
            raise self._crashed(str(error)) from None
        finally:
            self._wait_left_s -= time.perf_counter() - started

    def _crashed(self, what: str) -> VideoInputError:
        """The error for a child that died or broke the protocol, from the zygote's report."""
        self._finished = False  # whatever it said before: it goes now
        report = self._end()
        if report.get("exit_code") == OUT_OF_MEMORY_EXIT:
            return VideoLimitError(
                f"decoding this video needs more than the {self._sandbox.config.memory_mb} MB "
                "allowed",
                code="decode_memory_limit",
            )
        if report.get("signal") == "SIGXCPU":
            return VideoLimitError(
                f"decoding this video used more than the {self._sandbox.config.cpu_s} "
                "CPU-seconds allowed",
                code="decode_cpu_limit",
            )
        ending = report.get("signal") or f"exit code {report.get('exit_code')}"
        return DecoderCrashedError(
            f"the video decoder failed on this file ({ending}; {what}): the file is damaged "
            "or built to attack decoders; the server is unaffected"
        )


def _error_from(message: dict) -> VideoInputError:
    text = str(message.get("message", "the video could not be decoded"))
    if message.get("error") == "format":
        return UnsupportedFormatError(text, detected=str(message.get("detected")))
    if message.get("error") == "limit":
        return VideoLimitError(text, code=str(message.get("code", "video_too_large")))
    return VideoInputError(text)


def _stop_zygote(zygote: subprocess.Popen, control: socket.socket) -> None:
    control.close()  # the zygote sees the end of its socket and exits
    try:
        zygote.wait(timeout=5)
    except subprocess.TimeoutExpired:
        zygote.kill()
        zygote.wait()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it had already ended
        os.kill(pid, signal.SIGKILL)
