"""`make archive` packs the checkpoint it is asked for, and only the demo model is ever trained
by it: real make on the project's Makefile, with a scratch model store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make(*arguments: str, dry_run: bool = False) -> str:
    command = ["make", "--no-print-directory", *(["-n"] if dry_run else []), *arguments]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_another_checkpoint_is_packed_even_when_older_than_the_archive(tmp_path):
    store, other = tmp_path / "store", tmp_path / "full" / "best.pt"
    store.mkdir()
    other.parent.mkdir()
    other.write_bytes(b"weights")
    os.utime(other, (1, 1))  # older than any archive
    (store / "deepfake.mar").write_bytes(b"archive")
    stamp = store / ".archived-checkpoint"
    _make(f"MODEL_STORE={store}", f"CHECKPOINT={ROOT / 'checkpoints/best.pt'}", str(stamp))
    os.utime(stamp, (2, 2))
    # The same checkpoint again: the record is left as it was, so nothing is packed again.
    _make(f"MODEL_STORE={store}", f"CHECKPOINT={ROOT / 'checkpoints/best.pt'}", str(stamp))
    assert stamp.stat().st_mtime == 2
    # Another one: recorded anew, which makes the archive older than what it depends on.
    _make(f"MODEL_STORE={store}", f"CHECKPOINT={other}", str(stamp))
    assert stamp.read_text().strip() == str(other)
    assert stamp.stat().st_mtime >= (store / "deepfake.mar").stat().st_mtime
    planned = _make("archive", f"MODEL_STORE={store}", f"CHECKPOINT={other}", dry_run=True)
    assert f"deploy.archive --checkpoint {other}" in planned
    # A checkpoint other than the demo model's is packed as it is, never trained over.
    assert "training.train" not in planned
