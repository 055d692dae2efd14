"""The compressed file: a small JSON header, the coder's streams, and two checksums.

Layout (all integers little-endian)::

    offset 0   4 bytes   magic b"DGMZ"
           4   2 bytes   format version (uint16), FORMAT_VERSION
           6   4 bytes   header length H (uint32)
          10   H bytes   header: UTF-8 JSON (sorted keys, no spaces)
      10 + H   4 W bytes the streams' 32-bit words, one stream after another (W = sum of header["streams"])
       end-32  32 bytes  SHA-256 of every byte before it

The header carries (``header_fields``): the coder and its options, the model's identity
(``identity.model_identity``), data set, shape (C, H, W), number of images, levels, and the SHA-256 of the
decoded images as uint8 (N, C, H, W) bytes. The trailing file hash rejects a flipped or truncated byte
before any decoding; the data hash is checked after decoding, so that a float mismatch between the
encoding and the decoding machine can never hand back a wrong image silently. Every way a file can be
unreadable ends in a one-line :class:`DGMError`.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import DGMError
from core.run_dir import atomic_write_bytes

MAGIC = b"DGMZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")  # magic, version, header length
_HASH_BYTES = 32


@dataclass
class CompressedFile:
    """A parsed file: its header (dict) and its streams (uint32 arrays, in header order)."""

    header: dict[str, Any]
    streams: list[np.ndarray]

    @property
    def payload_bytes(self) -> int:
        return 4 * sum(int(s.size) for s in self.streams)


def data_checksum(images: torch.Tensor) -> str:
    """SHA-256 (hex) of images on the data scale (N, C, H, W) as uint8 bytes in C order (levels <= 256)."""
    array = images.detach().to("cpu").round().to(torch.uint8).contiguous().numpy()
    return hashlib.sha256(array.tobytes()).hexdigest()


def to_bytes(header: dict[str, Any], streams: list[np.ndarray]) -> bytes:
    """The file's bytes; ``header["streams"]`` is set to the streams' word counts."""
    header = dict(header, streams=[int(s.size) for s in streams])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    words = b"".join(np.ascontiguousarray(s, dtype="<u4").tobytes() for s in streams)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text + words
    return body + hashlib.sha256(body).digest()


def from_bytes(data: bytes, name: str = "the file") -> CompressedFile:
    """Parse and verify a file's bytes; a foreign, truncated or corrupt file is a one-line error."""
    if len(data) < _PREFIX.size or data[:4] != MAGIC:
        raise DGMError(f"{name} is not a file written by evaluation.compress (no DGMZ magic number)")
    _, version, header_length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise DGMError(f"{name} has format version {version}; this decoder reads version {FORMAT_VERSION}")
    header = _parse_header(data, header_length)
    expected = None if header is None else _expected_size(header, header_length)
    if expected is not None and len(data) < expected:
        raise DGMError(f"{name} is truncated: {len(data)} bytes of the {expected} its header announces")
    body, digest = data[:-_HASH_BYTES], data[-_HASH_BYTES:]
    if len(data) < _PREFIX.size + _HASH_BYTES or hashlib.sha256(body).digest() != digest:
        raise DGMError(f"{name} is corrupt: its SHA-256 does not match its content (a changed or missing byte)")
    if header is None or expected != len(data):
        raise DGMError(f"{name} is corrupt: its header does not describe its content")
    offset = _PREFIX.size + header_length
    streams = []
    for count in header["streams"]:
        streams.append(np.frombuffer(data, dtype="<u4", count=count, offset=offset).astype(np.uint32))
        offset += 4 * count
    return CompressedFile(header, streams)


def _parse_header(data: bytes, header_length: int) -> dict[str, Any] | None:
    """The JSON header, or None if it is cut off or unreadable (the file hash then says why)."""
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    streams = header.get("streams") if isinstance(header, dict) else None
    if not isinstance(streams, list) or not all(isinstance(s, int) and s >= 0 for s in streams):
        return None
    return header


def _expected_size(header: dict[str, Any], header_length: int) -> int:
    return _PREFIX.size + header_length + 4 * sum(header["streams"]) + _HASH_BYTES


def write_file(path: str | Path, header: dict[str, Any], streams: list[np.ndarray]) -> int:
    """Write the file atomically; its size in bytes."""
    data = to_bytes(header, streams)
    atomic_write_bytes(Path(path), data)
    return len(data)


def read_file(path: str | Path) -> CompressedFile:
    """Read and verify a file written by :func:`write_file`."""
    path = Path(path)
    if not path.is_file():
        raise DGMError(f"no compressed file at {path}")
    return from_bytes(path.read_bytes(), str(path))
