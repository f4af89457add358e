"""Wire format between the judge and the worker (used by both sides; numpy and the standard library only).

A message is a frame on a dedicated pipe (never stdout, which belongs to the student's prints):

    b"LMK1" | payload length (8 bytes, big-endian) | header length (4 bytes) | header (JSON, UTF-8) | blobs

The header is {"body": <value>, "blobs": [byte length of each blob]}. Values are JSON (None, bool, int, float, str,
lists, dicts with string keys); a numpy array is replaced in the body by {"__array__": i} and travels as blob i in
.npy format, which the receiver loads with `allow_pickle=False`. Only boolean, integer and floating point arrays are
allowed, so nothing is ever unpickled. Tuples become lists and numpy scalars become Python numbers.
"""

from __future__ import annotations

import io
import json
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np

MAGIC = b"LMK1"
PREFIX = struct.Struct(">4sQ")
HEADER_LENGTH = struct.Struct(">I")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
ARRAY_KINDS = "biuf"
ARRAY_TAG = "__array__"


class ProtocolError(Exception):
    """A malformed, oversized or unsupported message."""


class ChannelClosed(ProtocolError):
    """The other end closed the pipe (for the judge: the worker exited)."""


class ChannelTimeout(Exception):
    """No complete message arrived (or could be sent) before the deadline."""


# ---------------------------------------------------------------------------------------------------- encoding
def _encode(value: Any, blobs: list[bytes], depth: int = 0) -> Any:
    if depth > 64:
        raise ProtocolError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic):
        if value.dtype.kind not in ARRAY_KINDS:
            raise ProtocolError(f"unsupported numpy scalar of dtype {value.dtype}")
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in ARRAY_KINDS or value.dtype.hasobject:
            raise ProtocolError(f"unsupported array dtype {value.dtype} (only bool, integer and float arrays)")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        blobs.append(buffer.getvalue())
        return {ARRAY_TAG: len(blobs) - 1}
    if isinstance(value, (list, tuple)):
        return [_encode(v, blobs, depth + 1) for v in value]
    if isinstance(value, dict):
        if ARRAY_TAG in value:
            raise ProtocolError(f"dict key {ARRAY_TAG!r} is reserved")
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"dict keys must be strings, got {type(key).__name__}")
            out[key] = _encode(v, blobs, depth + 1)
        return out
    raise ProtocolError(f"unsupported type {type(value).__name__}")


def encode(value: Any) -> bytes:
    """One complete frame carrying `value`."""
    blobs: list[bytes] = []
    body = _encode(value, blobs)
    header = json.dumps({"body": body, "blobs": [len(b) for b in blobs]}).encode("utf-8")
    payload_length = HEADER_LENGTH.size + len(header) + sum(len(b) for b in blobs)
    if payload_length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {payload_length} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    return b"".join([PREFIX.pack(MAGIC, payload_length), HEADER_LENGTH.pack(len(header)), header, *blobs])


def _load_array(blob: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a protocol error
        raise ProtocolError(f"invalid array payload ({type(exc).__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in ARRAY_KINDS:
        raise ProtocolError("array payload of an unsupported dtype")
    return array


def _decode(value: Any, arrays: list[np.ndarray], depth: int = 0) -> Any:
    if depth > 64:
        raise ProtocolError("value nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays, depth + 1) for v in value]
    if isinstance(value, dict):
        if ARRAY_TAG in value:
            index = value[ARRAY_TAG]
            if len(value) != 1 or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(arrays):
                raise ProtocolError("invalid array reference")
            return arrays[index]
        return {k: _decode(v, arrays, depth + 1) for k, v in value.items()}
    raise ProtocolError(f"unsupported JSON value {type(value).__name__}")


def decode_payload(payload: bytes) -> Any:
    """The value of a frame's payload (everything after the 12-byte prefix)."""
    if len(payload) < HEADER_LENGTH.size:
        raise ProtocolError("truncated message")
    (header_length,) = HEADER_LENGTH.unpack_from(payload)
    start = HEADER_LENGTH.size
    if start + header_length > len(payload):
        raise ProtocolError("truncated header")
    try:
        header = json.loads(payload[start : start + header_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("invalid JSON header") from None
    lengths = header.get("blobs") if isinstance(header, dict) else None
    if (not isinstance(lengths, list) or "body" not in header
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths)):
        raise ProtocolError("invalid header")
    offset = start + header_length
    if offset + sum(lengths) != len(payload):
        raise ProtocolError("blob lengths do not match the message length")
    arrays = []
    for n in lengths:
        arrays.append(_load_array(payload[offset : offset + n]))
        offset += n
    return _decode(header["body"], arrays)


def payload_length(prefix: bytes) -> int:
    """Validate a 12-byte frame prefix and return the payload length it announces."""
    magic, length = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("bad frame marker (something else wrote to the protocol pipe)")
    if length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"announced message of {length} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    return length


# ---------------------------------------------------------------------------------------------------- blocking I/O
def _read_exactly(fd: int, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise ChannelClosed("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> Any:
    """Blocking read of one message (worker side)."""
    length = payload_length(_read_exactly(fd, PREFIX.size))
    return decode_payload(_read_exactly(fd, length))


def write_message(fd: int, value: Any) -> None:
    """Blocking write of one message (worker side)."""
    data = memoryview(encode(value))
    while data:
        data = data[os.write(fd, data) :]


# ---------------------------------------------------------------------------------------------------- judge side
class Channel:
    """Judge-side end of the two pipes, with deadlines on every read and write."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()

    def send(self, value: Any, timeout: float) -> None:
        data = memoryview(encode(value))
        deadline = time.monotonic() + timeout
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout("sending timed out")
            _, writable, _ = select.select([], [self.write_fd], [], remaining)
            if writable:
                try:
                    data = data[os.write(self.write_fd, data[: 1 << 16]) :]
                except BrokenPipeError:
                    raise ChannelClosed("pipe closed") from None

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout("no reply before the deadline")
            readable, _, _ = select.select([self.read_fd], [], [], min(remaining, 3600.0))
            if readable:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise ChannelClosed("pipe closed")
                self._buffer.extend(chunk)

    def receive(self, timeout: float) -> Any:
        """The next message; raises ChannelTimeout, ChannelClosed or ProtocolError."""
        deadline = time.monotonic() + (timeout if math.isfinite(timeout) else 1e9)
        self._fill(PREFIX.size, deadline)
        length = payload_length(bytes(self._buffer[: PREFIX.size]))
        self._fill(PREFIX.size + length, deadline)
        payload = bytes(self._buffer[PREFIX.size : PREFIX.size + length])
        del self._buffer[: PREFIX.size + length]
        return decode_payload(payload)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
