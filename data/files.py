"""Locating, verifying and downloading data files.

Search order for the data directory: ``--data-dir``, else ``$DGM_DATA_DIR``, else a per-user cache
(``$XDG_CACHE_HOME/dgm-pyro/data`` or ``~/.cache/dgm-pyro/data``). Checksums are MD5 over the
*decompressed* bytes, so ``.amat`` and ``.amat.gz`` copies of the same file verify alike. Downloads
go to a temporary file that is verified before it is renamed into place. ``DGM_OFFLINE=1`` forbids
downloads (the tests set it).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

from core.errors import DGMError

DOWNLOAD_TIMEOUT_S = 30


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: explicit argument, ``$DGM_DATA_DIR``, or the per-user cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("DGM_DATA_DIR"):
        return Path(os.environ["DGM_DATA_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dgm-pyro" / "data"


def offline() -> bool:
    return os.environ.get("DGM_OFFLINE", "") not in ("", "0")


def read_maybe_gzip(path: Path) -> bytes:
    """The decompressed bytes of ``path`` (gzip detected by its magic number, not its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DGMError(f"{path} is a damaged gzip file ({exc}); delete it and download it again") from None
    return raw


def verify(path: Path, content: bytes, md5: str) -> None:
    """Compare the MD5 of the decompressed content with the expected one."""
    digest = hashlib.md5(content).hexdigest()
    if digest != md5:
        raise DGMError(f"{path} is corrupt: MD5 of its decompressed content is {digest}, expected {md5}; "
                       "delete it and download it again")


def find_file(folder: Path, names: list[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def download(url: str, destination: Path, md5: str) -> None:
    """Download ``url`` to ``destination`` atomically, verifying the decompressed MD5 first."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        verify(Path(url), read_maybe_gzip(Path(tmp)), md5)
        os.replace(tmp, destination)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class MissingDataFile(DGMError):
    """A data file that is neither on disk nor downloadable; ``combined`` joins several into one line."""

    def __init__(self, dataset: str, folder: Path, names: list[str], url: str, reason: str):
        self.dataset, self.folder, self.names, self.url, self.reason = dataset, folder, names, url, reason
        super().__init__(f"{dataset}: missing {' or '.join(names)} in {folder}; {reason}. Download {url} into "
                         f"{folder} (gzipped or not), or point --data-dir / DGM_DATA_DIR at a folder that has it")

    @staticmethod
    def combined(missing: list["MissingDataFile"]) -> DGMError:
        """One error naming every missing file (one line), instead of one file per attempt."""
        if len(missing) == 1:
            return missing[0]
        first = missing[0]
        files = "; ".join(f"{' or '.join(m.names)} ({m.url})" for m in missing)
        return DGMError(f"{first.dataset}: {len(missing)} files are missing in {first.folder}: {files}; "
                        f"{first.reason}. Download them into {first.folder} (gzipped or not), or point --data-dir / "
                        "DGM_DATA_DIR at a folder that has them")


def obtain(folder: Path, names: list[str], url: str, md5: str, dataset: str) -> bytes:
    """The verified, decompressed content of the first of ``names`` in ``folder``.

    Missing files are downloaded from ``url`` (saved as ``names[-1]``) unless offline; if that is
    impossible the error says which file, where it was looked for and how to provide it.
    """
    path = find_file(folder, names)
    if path is None:
        target = folder / names[-1]
        reason = "downloads are disabled (DGM_OFFLINE=1)" if offline() else None
        if reason is None:
            try:
                download(url, target, md5)
                path = target
            except DGMError:
                raise
            except Exception as exc:  # network errors come in many types
                reason = f"download from {url} failed ({type(exc).__name__}: {exc})"
        if path is None:
            raise MissingDataFile(dataset, folder, names, url, reason or "")
    content = read_maybe_gzip(path)
    verify(path, content, md5)
    return content
