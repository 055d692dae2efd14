"""The compressed file format: round trip, and a one-line error for every way a file can be damaged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import DGMError
from evaluation.compression.container import FORMAT_VERSION, MAGIC, data_checksum, from_bytes, to_bytes

HEADER = {"coder": {"name": "arm-ans", "batch_size": 4}, "data": {"count": 3}}
STREAMS = [np.array([1, 2, 3, 2**32 - 1], dtype=np.uint32), np.array([], dtype=np.uint32), np.array([7], np.uint32)]


def test_round_trip_keeps_header_and_streams():
    data = to_bytes(HEADER, STREAMS)
    parsed = from_bytes(data)
    assert parsed.header == dict(HEADER, streams=[4, 0, 1])
    assert all(np.array_equal(a, b) and a.dtype == np.uint32 for a, b in zip(parsed.streams, STREAMS))
    assert parsed.payload_bytes == 20
    assert data[:4] == MAGIC and data[4:6] == FORMAT_VERSION.to_bytes(2, "little")


def test_every_flipped_byte_is_detected():
    data = to_bytes(HEADER, STREAMS)
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(DGMError) as info:
            from_bytes(bytes(damaged), "f.dgmz")
        message = str(info.value)
        assert "\n" not in message and ("corrupt" in message or "truncated" in message or "magic" in message
                                        or "format version" in message), (position, message)


def test_truncated_and_foreign_files_are_refused():
    data = to_bytes(HEADER, STREAMS)
    for cut in (len(data) - 1, len(data) - 33, len(data) - 40):
        with pytest.raises(DGMError, match="truncated"):
            from_bytes(data[:cut], "f.dgmz")
    for cut in (0, 3, 8):
        with pytest.raises(DGMError, match="magic|corrupt|truncated"):
            from_bytes(data[:cut], "f.dgmz")
    with pytest.raises(DGMError, match="not a file written by evaluation.compress"):
        from_bytes(b"PK\x03\x04" + data[4:], "f.zip")
    future = bytearray(data)
    future[4] = FORMAT_VERSION + 1
    with pytest.raises(DGMError, match="format version 2"):
        from_bytes(bytes(future), "f.dgmz")


def test_data_checksum_sees_one_pixel():
    x = torch.zeros(3, 1, 4, 4)
    y = x.clone()
    y[2, 0, 3, 3] = 1
    assert data_checksum(x) != data_checksum(y) and data_checksum(x) == data_checksum(x.clone())
