"""The command line is generated from config dataclasses: types, defaults, booleans, refusals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from core.config import OneLineErrorParser, add_dataclass_arguments, build_config, explicit_options, to_jsonable
from core.errors import DGMError


@dataclass
class Example:
    size: int = field(default=3, metadata={"help": "a size"})
    rate: float = 0.5
    name: str = "a"
    mode: Literal["x", "y"] = "x"
    layers: tuple[int, ...] = (4, 4)
    flag: bool = False
    path: Optional[str] = None

    def validate(self) -> None:
        if self.size < 1:
            raise DGMError("size must be positive")


def parse(argv: list[str]) -> Example:
    parser = OneLineErrorParser(prog="t")
    add_dataclass_arguments(parser, Example)
    return build_config(Example, explicit_options(parser.parse_args(argv), Example))


def test_defaults_and_types() -> None:
    assert parse([]) == Example()
    got = parse(["--size", "7", "--rate", "1e-3", "--mode", "y", "--layers", "1", "2", "3", "--flag", "--path", "p"])
    assert got == Example(7, 1e-3, "a", "y", (1, 2, 3), True, "p")
    assert parse(["--no-flag"]).flag is False


def test_only_explicit_options_are_reported() -> None:
    parser = OneLineErrorParser(prog="t")
    add_dataclass_arguments(parser, Example)
    assert explicit_options(parser.parse_args(["--size", "2"]), Example) == {"size": 2}


@pytest.mark.parametrize("argv", [["--size", "two"], ["--mode", "z"], ["--unknown", "1"]])
def test_wrong_types_and_unknown_options_are_refused_in_one_line(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_validate_runs_and_json_round_trip() -> None:
    with pytest.raises(DGMError, match="size must be positive"):
        parse(["--size", "0"])
    config = parse(["--layers", "5"])
    assert build_config(Example, to_jsonable(config)) == config


def test_prefixed_options_with_stems_and_hidden_aliases():
    """A component's options inside a larger command: ``--PREFIX-STEM``, older spellings parse but are hidden."""
    import argparse
    from dataclasses import dataclass, field

    from core.config import add_prefixed_arguments, build_config, prefixed_values

    @dataclass(frozen=True)
    class Options:
        num_steps: int = field(default=3, metadata={"option": "steps", "help": "steps"})
        step_size: float = field(default=0.1, metadata={"aliases": ("--step-size",), "help": "size"})

    parser = argparse.ArgumentParser()
    add_prefixed_arguments(parser, Options, "ais")
    assert build_config(Options, prefixed_values(parser.parse_args(["--ais-steps", "5"]), Options, "ais")) == \
        Options(num_steps=5)
    assert prefixed_values(parser.parse_args(["--step-size", "0.5"]), Options, "ais") == {"step_size": 0.5}
    assert "--step-size" not in parser.format_usage().replace("--ais-step-size", "")
