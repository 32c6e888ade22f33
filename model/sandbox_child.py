"""The decoder's side of the sandbox: a zygote process that forks one confined child per video.

`python -m model.sandbox_child` is started once per worker (model/sandbox.py) with a Unix
socket to it. It imports only PyAV, numpy and the decoding code (no torch, no model, no
credentials), then waits. For each video the worker sends it one end of a fresh socket pair;
the zygote forks a child that confines itself (`confine`) and then decodes over that socket:
bytes in, JSON headers and raw RGB frames out, never a pickle, so even a decoder an attacker
took over can only send the worker data it checks. The zygote reports how each child ended.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import socket
import struct
import sys
import traceback
from dataclasses import asdict, dataclass

try:  # loaded once in the zygote, not in each child
    import pyseccomp as seccomp
except (ImportError, OSError):  # the package, or libseccomp.so.2, is missing: no filter
    seccomp = None

from model.credentials import CredentialsConfig
from model.errors import UnsupportedFormatError, VideoInputError, VideoLimitError
from model.frame_slots import FrameSlots
from model.provenance import ProvenanceReader
from model.video import SamplingConfig, VideoLimits, VideoReader

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_MESSAGE = struct.Struct("!I")  # each message: its length, then the bytes
FAILED_EXIT, OUT_OF_MEMORY_EXIT = 70, 71  # a child's exit codes besides 0
_SIGNALS = {int(number) for number in signal.Signals}


@dataclass(frozen=True)
class SandboxConfig:
    """Decoding in a confined child process (the `sandbox` block of the service config)."""

    enabled: bool = True
    memory_mb: int = 2048  # address space (RLIMIT_AS): FFmpeg's buffers and the frames
    cpu_s: int = 120  # CPU time (RLIMIT_CPU) of one video's decoding, all threads together

    def __post_init__(self) -> None:
        if self.memory_mb < 256 or self.cpu_s < 1:
            raise ValueError(
                f"sandbox needs memory_mb >= 256 and cpu_s >= 1, got {self.memory_mb}, {self.cpu_s}"
            )


@dataclass(frozen=True)
class Confined:
    """Which confinements took effect in a child (the platform may refuse some)."""

    rlimits: bool = False
    network_namespace: bool = False
    seccomp: bool = False


def confine(limits: SandboxConfig) -> Confined:
    """Confine this process for decoding untrusted bytes: resource limits; a new network
    namespace with no interfaces (through a user namespace, where the kernel allows it); and a
    seccomp filter that refuses sockets, new programs, new processes, signals to others and
    every file-system write. Each step is best effort; the result says which took."""
    memory = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    network_namespace = libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0
    return Confined(True, network_namespace, _install_seccomp())


def _install_seccomp() -> bool:
    if seccomp is None:
        return False
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for call in (
        "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
        "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
        "process_vm_writev", "kill", "unlink", "unlinkat", "rename", "renameat", "renameat2",
        "mkdir", "mkdirat", "rmdir", "creat", "truncate", "chmod", "fchmodat", "chown",
        "fchownat", "lchown", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat",
        "mount", "umount2", "pivot_root", "chroot", "setns", "unshare",
    ):  # fmt: skip
        rules.add_rule(refuse, call)
    # A thread is a clone with CLONE_THREAD; anything else would be a new process. clone3
    # passes its flags in memory a filter cannot read: ENOSYS makes glibc fall back to clone.
    rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for mode in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND):
        rules.add_rule(refuse, "open", seccomp.Arg(1, seccomp.MASKED_EQ, mode, mode))
        rules.add_rule(refuse, "openat", seccomp.Arg(2, seccomp.MASKED_EQ, mode, mode))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "openat2")  # flags in memory, as clone3
    rules.load()
    return True


def send_message(channel: socket.socket, payload: bytes | memoryview) -> None:
    channel.sendall(_MESSAGE.pack(len(payload)))
    channel.sendall(payload)


def receive_message(channel: socket.socket, max_bytes: int) -> bytes:
    """One message; ConnectionError on a closed socket, ValueError past `max_bytes`."""
    (length,) = _MESSAGE.unpack(receive_exactly(channel, _MESSAGE.size))
    if length > max_bytes:
        raise ValueError(f"message of {length} bytes, more than the {max_bytes} allowed")
    return receive_exactly(channel, length)


def receive_exactly(channel: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = channel.recv_into(view[received:], size - received)
        if count == 0:
            raise ConnectionError("the other end closed the socket")
        received += count
    return bytes(buffer) if size < 4096 else buffer  # large ones stay writable, uncopied


def send_json(channel: socket.socket, value: dict) -> None:
    send_message(channel, json.dumps(value).encode())


def decode(channel: socket.socket, limits: SandboxConfig, credentials: CredentialsConfig) -> None:
    """The child's work: request, then video bytes in; info (with the provenance: container
    facts and Content Credentials, read once the bytes proved to be a video), frames, done
    (or error) out."""
    request = json.loads(receive_message(channel, 2**20))
    video = receive_message(channel, request["video_bytes"])
    confined = confine(limits)
    # Built here: a c2pa context made before the fork is not valid after it (0.3 ms).
    provenance = ProvenanceReader(credentials)
    try:
        with VideoReader(
            video,
            request["threads"],
            VideoLimits(**request["limits"]),
            request["skip_unsampled"],
        ) as reader:
            send_json(
                channel,
                {
                    "kind": "info",
                    "info": asdict(reader.info),
                    "facts": asdict(reader.facts),
                    "provenance": provenance.read(video, reader.facts).to_message(),
                    "confined": asdict(confined),
                },
            )
            # The frame slots the worker made (model/frame_slots.py), then the sampling.
            _, memory, _, _ = socket.recv_fds(channel, 1, 1)
            order = json.loads(receive_message(channel, 2**20))
            height, width = reader.info.height, reader.info.width
            with FrameSlots(memory[0], height * width * 3, int(order["slots"])) as slots:
                for sent, frame in enumerate(reader.sample(SamplingConfig(**order["sampling"]))):
                    if frame.rgb.shape != (height, width, 3):
                        raise VideoInputError(
                            f"the video changes its picture size mid-stream ({width}x{height} to "
                            f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}), which is not supported"
                        )
                    if sent >= slots.count:  # wait until the worker copied the oldest frame out
                        receive_exactly(channel, 1)
                    slot = sent % slots.count
                    slots.write(slot, frame.rgb)
                    header = {"kind": "frame", "index": frame.index, "slot": slot}
                    send_json(channel, {**header, "timestamp_s": frame.timestamp_s})
            send_json(channel, {"kind": "done", "frames_decoded": reader.frames_decoded})
    except UnsupportedFormatError as error:
        send_json(channel, {"kind": "error", "error": "format", "message": str(error),
                            "detected": error.detected})  # fmt: skip
    except VideoLimitError as error:
        send_json(channel, {"kind": "error", "error": "limit", "message": str(error),
                            "code": error.code})  # fmt: skip
    except VideoInputError as error:
        send_json(channel, {"kind": "error", "error": "input", "message": str(error)})
    except MemoryError:
        message = f"decoding this video needs more than the {limits.memory_mb} MB allowed"
        send_json(channel, {"kind": "error", "error": "limit", "message": message,
                            "code": "decode_memory_limit"})  # fmt: skip


def serve(control: socket.socket, limits: SandboxConfig, credentials: CredentialsConfig) -> None:
    """The zygote: for each socket the worker passes, fork a child to decode on it, wait for
    it and tell the worker how it ended ({"pid", "exit_code", "signal"})."""
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 16, 1)
        except (ConnectionError, OSError):
            return
        if not fds:
            return  # the worker closed its end: it is shutting down
        channel = socket.socket(fileno=fds[0])
        pid = os.fork()
        if pid == 0:
            control.close()
            code = 0
            try:
                decode(channel, limits, credentials)
            except MemoryError:  # outside the decoder: past RLIMIT_AS all the same
                code = OUT_OF_MEMORY_EXIT
            except BaseException:  # the worker learns it from the exit code, its log why
                traceback.print_exc()
                code = FAILED_EXIT
            finally:
                os._exit(code)
        channel.close()
        ended = {"kind": "ended", "pid": pid}
        try:
            send_json(control, {"kind": "started", "pid": pid})
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                number = os.WTERMSIG(status)
                ended["signal"] = signal.Signals(number).name if number in _SIGNALS else str(number)
            else:
                ended["exit_code"] = os.WEXITSTATUS(status)
            send_json(control, ended)
        except ConnectionError:  # the worker stopped before it read the report: it is gone
            return


def main() -> int:
    memory_mb, cpu_s, control_fd = (int(value) for value in sys.argv[1:4])
    credentials = CredentialsConfig(**json.loads(sys.argv[4]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when the zygote ends
    if credentials.enabled:
        import c2pa  # noqa: F401  (loaded once here, inherited by every child)
    serve(socket.socket(fileno=control_fd), SandboxConfig(True, memory_mb, cpu_s), credentials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
