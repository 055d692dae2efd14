"""User-facing errors and the wrapper that turns them into one line on stderr.

Anything a user can cause (a wrong option, a missing file, a model that cannot represent a data
set) raises :class:`DGMError`. Command-line entry points run through :func:`run_cli`, which prints
``error: <message>`` and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import sys
from typing import Callable, NoReturn


class DGMError(Exception):
    """An error caused by the user's input; its message is complete and printed alone."""


class Interrupted(DGMError):
    """Ctrl-C (SIGINT): the message says what was kept; exit code 130, as for any interrupted command."""

    exit_code = 130


class TrainingDiverged(DGMError):
    """The training objective became NaN or infinite; the last good checkpoint is kept."""


def resource_error(exc: BaseException) -> str | None:
    """The one-line message of an error the machine's resources caused (disk full, no permission, out of
    memory), or None for anything else (a bug, which should keep its traceback)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"no space left on the device{where}; free some space and run the command again"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) and exc.filename:
        return f"permission denied: {exc.filename} cannot be written; choose another location"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
            isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)):
        detail = " ".join(str(exc).split())
        size = re.search(r"allocate (?:memory: you tried to allocate )?(\d+) bytes", detail)
        need = f" (one allocation of {int(size.group(1)) / 2 ** 30:.1f} GiB)" if size else ""
        return f"out of memory{need}: use smaller sizes (e.g. --batch-size, --hidden, -n, --num-samples, --chunk-size)"
    return None


#: what torch.distributed's backends say when another process of the job died or stopped answering
PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
             "socket closed", "connection refused")


def peer_error(exc: BaseException) -> str | None:
    """Under torchrun (``RANK`` set), the one-line message of a collective that failed because another rank
    died or hung (gloo/NCCL errors), or None. Every surviving rank prints its own line."""
    rank = os.environ.get("RANK")
    if rank is None or not isinstance(exc, RuntimeError):
        return None
    text = " ".join(str(exc).split()).lower()
    if type(exc).__name__ not in ("DistBackendError", "DistNetworkError", "DistStoreError") and not (
            ("gloo" in text or "nccl" in text or "c10d" in text) and any(p in text for p in PEER_LOST)):
        return None
    return (f"rank {rank}: another process of this torchrun job stopped or stopped answering; this rank stops too. "
            "Checkpoints written so far are kept: start the job again with --resume")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 on a :class:`DGMError` or an exhausted resource (disk,
    memory, permissions), 130 on Ctrl-C; the message is one line on stderr."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C raises KeyboardInterrupt
    try:
        code = main(argv)
    except DGMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except (OSError, MemoryError, RuntimeError) as exc:
        lost_peer = peer_error(exc)
        message = resource_error(exc) or lost_peer
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        if lost_peer is not None:
            # the broken process group's threads abort a normal interpreter exit ("terminate called without an
            # active exception", SIGABRT): leave at once, with our exit code, once the message is out
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        sys.exit(2)
    sys.exit(code or 0)


def quiet_interrupts() -> None:
    """Ctrl-C while a command is still importing its modules (torch takes seconds) exits with one line
    instead of a traceback; ``run_cli`` restores the usual KeyboardInterrupt once the command runs."""

    def interrupted(signum: int, frame: object) -> None:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)

    signal.signal(signal.SIGINT, interrupted)
