"""`python -m tools.scan`: one line per video, errors reported and the run continues."""

from __future__ import annotations

from protocol.wire import find_videos
from support.video_factory import blank_frames, encode_video
from tools.scan import main


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
    assert lines[0] == f"{folder / 'broken.mp4'}: error: not a video file this server " + (
        "opens: the upload looks like text; accepted containers: MP4/MOV/3GP, Matroska/WebM, "
        "AVI (remux another video without re-encoding: ffmpeg -i in -c copy out.mp4)"
    )
    # Sampled as served: a short clip gets at least 15 frames (or every frame it has).
    assert lines[1] == f"{folder / 'nested' / 'blank.mp4'}: 15 frames, 0 faces"
