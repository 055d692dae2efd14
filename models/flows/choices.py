"""Command-line choices that come from a registry: the help text lists them when it is shown.

Config fields whose choices are registered names (``--posterior-flow``, ``--prior-flow``, the flow
density's ``--arch``) are plain strings checked against the registry by the config's ``validate``
(:func:`unknown_choice`), so a family registered by any file, even after the config class was
defined, is accepted and listed. Their ``help`` is a :class:`ChoicesHelp`: a string whose formatted
form (what ``core.config`` writes into ``--help``) appends the registry's current choices.
"""
from __future__ import annotations

from typing import Callable, Iterable

from core.errors import DGMError


class ChoicesHelp(str):
    """A help text that, when formatted, appends ``describe()``, read from the registry at that moment."""

    def __new__(cls, text: str, describe: Callable[[], str]) -> "ChoicesHelp":
        help_text = super().__new__(cls, text)
        help_text.describe = describe
        return help_text

    def __str__(self) -> str:
        return f"{str.__str__(self)}{self.describe()}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def unknown_choice(option: str, value: str, choices: Iterable[str]) -> DGMError:
    """The one-line error for ``value`` not among ``choices``, naming them."""
    return DGMError(f"unknown {option} {value!r}; choose one of {', '.join(choices)}")
