"""`python -m model.scan`: one line per video, errors reported and the run continues."""

from __future__ import annotations

import torch

from model.network import ModelSettings, build_model, save_checkpoint
from model.scan import main
from model.video import find_videos
from tests.video_factory import blank_frames, encode_video


def _folder_with_a_blank_and_a_broken_video(tmp_path):
    (tmp_path / "nested").mkdir(parents=True)
    (tmp_path / "nested" / "blank.mp4").write_bytes(encode_video(blank_frames(30)))
    (tmp_path / "broken.mp4").write_text("this is not a video")
    (tmp_path / "notes.txt").write_text("ignored: not a video suffix")
    return tmp_path


def test_folders_are_searched_for_videos(tmp_path):
    folder = _folder_with_a_blank_and_a_broken_video(tmp_path)
    assert find_videos([folder]) == [folder / "broken.mp4", folder / "nested" / "blank.mp4"]


def test_faces_only_without_a_checkpoint(tmp_path, capsys):
    folder = _folder_with_a_blank_and_a_broken_video(tmp_path)
    assert main([str(folder)]) == 1  # one video could not be read
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{folder / 'broken.mp4'}: error: not a video file FFmpeg can read " + (
        "(Invalid data found when processing input); send a video such as MP4, MOV, MKV, "
        "WebM or AVI"
    )
    assert lines[1] == f"{folder / 'nested' / 'blank.mp4'}: 2 frames, 0 faces"


def test_verdicts_with_a_checkpoint(tmp_path, capsys, one_face_video):
    folder = _folder_with_a_blank_and_a_broken_video(tmp_path / "videos")
    checkpoint = tmp_path / "random.pt"
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelSettings()).eval(), ModelSettings(), checkpoint)
    exit_code = main(
        [str(folder / "nested"), str(one_face_video.path), "--checkpoint", str(checkpoint)]
    )
    assert exit_code == 0
    blank_line, face_line = capsys.readouterr().out.splitlines()
    assert blank_line.endswith("blank.mp4: no_face - (0 faces)")
    assert face_line.startswith(f"{one_face_video.path}: ")
    assert face_line.endswith("(6 faces)")
    assert face_line.split()[1] in ("fake", "real")
