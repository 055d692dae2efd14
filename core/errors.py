"""User-facing errors and the wrapper that turns them into one line on stderr.

Anything a user can cause (a wrong option, a missing file, a model that cannot represent a data
set) raises :class:`DGMError`. Command-line entry points run through :func:`run_cli`, which prints
``error: <message>`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, NoReturn


class DGMError(Exception):
    """An error caused by the user's input; its message is complete and printed alone."""


class TrainingDiverged(DGMError):
    """The training objective became NaN or infinite; the last good checkpoint is kept."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 on a :class:`DGMError`, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except DGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
