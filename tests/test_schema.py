"""model/schema.py: one typed mechanism for YAML settings and command-line flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from model.schema import ConfigError, add_arguments, from_arguments, from_mapping, parse_command
from model.verdict import VerdictConfig
from model.video import SamplingConfig


@dataclass(frozen=True)
class Inner:
    ratio: float = 0.5
    span: tuple[int, int] = (1, 3)
    seed: int = 7  # shares its name with the outer field: flagged with a prefix

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ValueError(f"ratio must lie in [0, 1], got {self.ratio}")


@dataclass(frozen=True)
class Command:
    source: Path = field(metadata={"positional": True})
    folders: tuple[Path, ...] = (Path("a"),)
    limit: int | None = None
    landmarks: bool = True
    seed: int = 0
    inner: Inner = field(default_factory=Inner)


def _parsed(argv: list[str], base: Command | None = None) -> Command:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Command)
    return from_arguments(parser.parse_args(argv), Command, base)


def test_every_leaf_field_is_a_flag_of_its_type():
    command = _parsed(
        ["in.mp4", "--folders", "x", "y", "--folders", "z", "--limit", "4", "--no-landmarks",
         "--ratio", "0.25", "--span", "2", "5", "--seed", "3", "--inner-seed", "9"]
    )  # fmt: skip
    assert command == Command(
        Path("in.mp4"),
        (Path("x"), Path("y"), Path("z")),
        4,
        False,
        3,
        Inner(0.25, (2, 5), 9),
    )


def test_flags_not_given_keep_the_base_and_none_clears_an_optional_one():
    base = Command(Path("b.mp4"), limit=5, inner=Inner(ratio=0.75))
    assert _parsed(["b.mp4"], base) is base
    assert _parsed(["b.mp4", "--limit", "none"], base).limit is None
    assert _parsed(["b.mp4"]) == Command(Path("b.mp4"))


def test_a_value_the_dataclass_refuses_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"ratio must lie in \[0, 1\], got 2.0"):
        _parsed(["b.mp4", "--ratio", "2"])
    with pytest.raises(ConfigError, match="unknown aggregation 'vote'"):
        parser = argparse.ArgumentParser()
        add_arguments(parser, VerdictConfig)
        from_arguments(parser.parse_args(["--aggregation", "vote"]), VerdictConfig)


def test_a_mapping_is_read_strictly_with_tuples_and_paths():
    values = {"source": "v.mp4", "folders": ["p", "q"], "inner": {"span": [4, 6]}}
    command = from_mapping(Command, values, "recipe")
    assert command.folders == (Path("p"), Path("q")) and command.inner.span == (4, 6)
    for wrong, message in [
        ({"source": "v", "inner": {"spam": 1}}, r"unknown key\(s\) in recipe.inner: \['spam'\]"),
        ({"source": "v", "inner": {"span": [1, 2, 3]}}, "recipe.inner.span must hold 2 values"),
        ({"source": "v", "limit": "four"}, "recipe.limit must be int or null"),
        ({"source": "v", "inner": {"ratio": 3}}, "recipe.inner: ratio must lie in"),
    ]:
        with pytest.raises(ConfigError, match=message):
            from_mapping(Command, wrong, "recipe")


def test_the_services_sections_give_the_tools_their_sampling_and_verdict_flags():
    from training.infer import InferCommand

    parser = argparse.ArgumentParser()
    add_arguments(parser, InferCommand)
    command = from_arguments(
        parser.parse_args(["--num-frames", "8", "--threshold", "0.7"]), InferCommand
    )
    assert command.sampling == SamplingConfig(num_frames=8)
    assert command.verdict == VerdictConfig(threshold=0.7)


def test_a_value_the_checks_refuse_is_a_usage_error_not_a_traceback(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    add_arguments(parser, SamplingConfig)
    assert parse_command(parser, SamplingConfig, ["--interval", "5"]).interval == 5
    with pytest.raises(SystemExit) as exit_info:
        parse_command(parser, SamplingConfig, ["--interval", "0"])
    assert exit_info.value.code == 2
    assert "tool: error: flags: interval must be at least 1 frame, got 0" in capsys.readouterr().err
