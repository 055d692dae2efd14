"""Configuration dataclasses <-> command line <-> ``config.json``.

Every model has one config dataclass; the command line is generated from its fields (name,
type, default, ``metadata["help"]``), so options are never written twice. Supported field types:
``int``, ``float``, ``str``, ``bool`` (``--flag/--no-flag``), ``Literal[...]`` (choices),
``tuple[int, ...]`` (one or more values) and ``Optional`` of any of these.

Options of a component inside a larger command (an estimator's options in ``evaluation.evaluate``) get
a prefix (:func:`add_prefixed_arguments`): ``--ais-steps`` for the field ``num_steps`` of ``AISOptions``
under the prefix ``ais`` with ``metadata["option"] = "steps"``; ``metadata["aliases"]`` keeps older
spellings working, hidden from ``--help``.

``--help`` shows plain text: :func:`plain_text` removes the reST markup of docstrings and field help
(double backticks, roles such as ``:class:`x```) from every description and option help of a
:class:`OneLineErrorParser`, which also gives the options every command shares (``--split``,
``--seed``, ``--device``, ``--checkpoint``) their help when a command adds them without one.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import types
import typing
from typing import Any, Literal, get_args, get_origin

from core.errors import DGMError


def option_name(field_name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parser_kwargs(field: dataclasses.Field, hints: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    tp, optional = _strip_optional(hints[field.name])
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
    default = overrides.get(field.name, default)
    help_text = plain_text(field.metadata.get("help", ""))
    kwargs: dict[str, Any] = {"help": f"{help_text} (default: {default!r})".strip(), "default": argparse.SUPPRESS}
    origin = get_origin(tp)
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is Literal:
        choices = get_args(tp)
        kwargs["choices"] = choices
        kwargs["type"] = type(choices[0])
    elif origin is tuple:
        kwargs["nargs"] = "+"
        kwargs["type"] = get_args(tp)[0]
    elif tp in (int, float, str):
        kwargs["type"] = tp
    else:
        raise TypeError(f"config field {field.name}: unsupported type {tp!r}")
    if optional and tp is not bool:
        kwargs["metavar"] = field.name.upper()
    return kwargs


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                            overrides: dict[str, Any] | None = None) -> None:
    """Add one option per field of ``cls``; defaults are SUPPRESSed so explicit options are known.

    ``overrides`` replaces some defaults in the help text (the values are applied by the caller).
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or cls.__name__)
    for field in dataclasses.fields(cls):
        if field.metadata.get("cli", True):
            group.add_argument(option_name(field.name), dest=field.name,
                               **_parser_kwargs(field, hints, overrides or {}))


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """``value`` as field ``name`` of type ``tp`` takes it (a JSON list becomes a tuple, an integer a float), or
    a one-line error: values from a saved ``config.json`` or from Python are checked like command-line ones."""
    inner, optional = _strip_optional(tp)
    if value is None and optional:
        return None
    origin = get_origin(inner)
    wrong = DGMError(f"{option_name(name)} takes {_describe(inner)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(inner):
            raise DGMError(f"{option_name(name)} must be one of {', '.join(map(str, get_args(inner)))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise wrong
        return tuple(_coerce(name, v, get_args(inner)[0]) for v in value)
    if inner is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        value = float(value)
        if not math.isfinite(value):
            raise DGMError(f"{option_name(name)} must be a finite number, got {value}")
        return value
    if inner is str and not isinstance(value, str):
        raise wrong
    return value


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is tuple:
        return f"one or more {_describe(get_args(tp)[0])} values"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def prefixed_option(prefix: str, field: dataclasses.Field) -> str:
    """``--PREFIX-STEM``: STEM is ``metadata["option"]`` or the field's name (``_`` -> ``-``)."""
    return option_name(f"{prefix}_{field.metadata.get('option', field.name)}")


def _prefixed_dest(prefix: str, name: str) -> str:
    return f"{prefix}__{name}"


def add_prefixed_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str, title: str | None = None) -> None:
    """One option :func:`prefixed_option` per field of ``cls``, plus its hidden ``metadata["aliases"]``;
    defaults SUPPRESSed as in :func:`add_dataclass_arguments`. Read back with :func:`prefixed_values`."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{prefix} options")
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            continue
        kwargs = _parser_kwargs(field, hints, {})
        if "action" not in kwargs:
            kwargs["metavar"] = field.metadata.get("option", field.name).upper()
        dest = _prefixed_dest(prefix, field.name)
        group.add_argument(prefixed_option(prefix, field), dest=dest, **kwargs)
        aliases = tuple(field.metadata.get("aliases", ()))
        if aliases:
            group.add_argument(*aliases, dest=dest, **{**kwargs, "help": argparse.SUPPRESS})


def prefixed_values(namespace: argparse.Namespace, cls: type, prefix: str) -> dict[str, Any]:
    """The fields of ``cls`` set on the command line through :func:`add_prefixed_arguments` (name -> value)."""
    values = vars(namespace)
    return {f.name: values[_prefixed_dest(prefix, f.name)] for f in dataclasses.fields(cls)
            if _prefixed_dest(prefix, f.name) in values}


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from a dict, ignoring foreign keys, with every value type-checked (lists become
    tuples, non-finite floats are refused) and the config's own ``validate()`` run: one-line errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(k, v, hints[k]) for k, v in values.items() if k in names}
    config = cls(**kwargs)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def explicit_options(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}


def to_jsonable(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)\s*(?:<[^`>]*>)?`")


def plain_text(text: str | None) -> str | None:
    """``text`` without reST markup, for ``--help``: ``:class:`~a.B``` -> ``B`` (a role's title, or
    the last part of a ``~`` target), double and single backticks dropped."""
    if not text:
        return text
    text = str(text)  # a lazy help (models.flows.choices.ChoicesHelp) lists its registry's choices now

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        return target.rsplit(".", 1)[-1] if match.group(0).count("`~") else target

    return _ROLE.sub(role, text).replace("``", "").replace("`", "")


#: help of the options shared by the commands, used when a command adds one without its own help
COMMON_HELP = {
    "--split": "the data split to use (default: %(default)s)",
    "--seed": "random seed of the draws, for a repeatable result (default: %(default)s)",
    "--device": "where to compute; auto uses a GPU when there is one (default: %(default)s)",
    "--checkpoint": "best: best.pt (best validation objective); last: checkpoint.pt (the last epoch) "
                    "(default: %(default)s)",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single ``error: ...`` line and exit code 2, and whose
    ``--help`` is plain text (:func:`plain_text`) with a help line for every option (:data:`COMMON_HELP`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "description" in kwargs:
            kwargs["description"] = plain_text(kwargs["description"])
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """``ArgumentParser.add_argument``, with plain-text help and the shared options' help by default."""
        if kwargs.get("help") is None:
            common = next((COMMON_HELP[name] for name in args if name in COMMON_HELP), None)
            if common is not None:
                kwargs["help"] = common
        elif kwargs["help"] is not argparse.SUPPRESS:
            kwargs["help"] = plain_text(kwargs["help"])
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:  # noqa: D401 - argparse API
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
