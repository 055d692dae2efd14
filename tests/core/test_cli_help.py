"""Every option of every command has a help line, and --help is plain text (no reST markup from the
docstrings, in option help or in the descriptions).

The commands are found, not listed: every module of the project that defines ``main`` and builds an
argument parser. Each ``main`` is run with ``parse_args`` replaced by a capture, so the parser it builds
is inspected without doing any work; sub-commands (``inference.train MODEL``) are walked too.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Iterator

import pytest

from core.config import OneLineErrorParser, plain_text

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "data", "models", "inference", "evaluation", "benchmarks", "demo", "notebooks")
#: reST markup that must not reach --help: double backticks, any backtick, roles such as :class:`x`
MARKUP = re.compile(r"``|`|:[a-z]+(:[a-z]+)?:`")
DEFAULT = re.compile(r"\s*\(default:[^)]*\)\s*$")


def command_modules() -> list[str]:
    """Modules that define ``main`` and build a parser (``__main__`` shims excluded: they run on import)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if path.name != "__main__.py" and re.search(r"^def main\(", text, re.M) and "Parser(" in text:
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


COMMANDS = command_modules()


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def _capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
    raise _Captured(self)


def command_parser(module: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``module.main`` builds, caught at its first ``parse_args``."""
    main = importlib.import_module(module).main
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", _capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", _capture)
    monkeypatch.setattr(sys, "argv", [module])
    try:
        main([]) if inspect.signature(main).parameters else main()
    except _Captured as captured:
        return captured.parser
    raise AssertionError(f"{module}.main never parsed its arguments")


def options(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.Action]]:
    """(command, action) for every shown option and positional, sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield name, choice
            for sub_name, sub in action.choices.items():
                yield from options(sub, f"{name} {sub_name}")
            continue
        yield name, action


def descriptions(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, str]]:
    """(command, description) of the command and of its sub-commands."""
    yield name, parser.description or ""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from descriptions(sub, f"{name} {sub_name}")


def problems(parser: argparse.ArgumentParser, name: str) -> list[str]:
    found = [f"{command}: reST markup in its description" for command, text in descriptions(parser, name)
             if MARKUP.search(text)]
    for command, action in options(parser, name):
        label = f"{command}: {'/'.join(action.option_strings) or action.dest}"
        text = action.help or ""
        if not DEFAULT.sub("", text).strip():
            found.append(f"{label}: no help")
        elif MARKUP.search(text):
            found.append(f"{label}: reST markup in {text!r}")
    return found


def test_the_commands_are_found() -> None:
    for expected in ("inference.train", "inference.sample", "evaluation.evaluate", "evaluation.compare",
                     "evaluation.bdmc", "evaluation.gan_likelihood", "evaluation.sample_quality",
                     "evaluation.amortization_gap", "evaluation.compress", "evaluation.decompress",
                     "notebooks.run", "demo.main_job", "benchmarks.reproduce"):
        assert expected in COMMANDS


@pytest.mark.parametrize("module", COMMANDS)
def test_every_option_has_plain_help(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = command_parser(module, monkeypatch)
    found = problems(parser, module)
    assert not found, "\n".join(found)


def test_plain_text_removes_markup() -> None:
    assert plain_text("see :class:`~models.vae.VAE` and ``--out``") == "see VAE and --out"
    assert plain_text(":func:`the trainer <inference.train.main>` and `x`") == "the trainer and x"
    assert plain_text(":data:`core.config.COMMON_HELP`") == "core.config.COMMON_HELP"


def test_the_parser_cleans_help_and_fills_shared_options() -> None:
    parser = OneLineErrorParser(prog="x", description="uses ``--seed``")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", help="the ``RUN_DIR``")
    assert parser.description == "uses --seed"
    assert not problems(parser, "x")
    assert "(default: 3)" in parser.format_help()
