"""The wire format between coordinator and workers: one JSON header frame, then one raw
buffer frame per array. Nothing is pickled.

The header lists the arrays it carries: ``{"arrays": [{"key", "dtype", "shape", "nbytes"}, ...]}``.
On receipt every array is checked before it is built: the dtype must be a plain numeric
dtype (no object, string or structured dtypes), the shape a list of non-negative ints, and
the frame's size must equal ``prod(shape) * itemsize`` and the declared ``nbytes``.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

# 1: the first release. 2: workers answer 'forward_backward' (parts carry a "kind"), and a probe's
# snapshot holds models with several inputs and outputs, its arrays sent without copies.
PROTOCOL_VERSION = 2

# Array kinds allowed on the wire: bool, signed and unsigned ints, floats, complex.
ALLOWED_DTYPE_KINDS = frozenset("biufc")
MAX_HEADER_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """A message does not follow the wire format."""


def _dtype_from_wire(text: Any) -> np.dtype:
    if not isinstance(text, str):
        raise ProtocolError(f"dtype must be a string, got {type(text).__name__}")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise ProtocolError(f"unknown dtype {text!r}") from exc
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"dtype {text!r} is not allowed on the wire (only numeric dtypes are)")
    return dtype


def _shape_from_wire(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(f"shape must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> list:
    """Frames for one message: the JSON header (with the array table added), then the buffers."""
    table = []
    buffers = []
    for key, value in (arrays or {}).items():
        array = _widened(np.asarray(value, order="C"))  # (ascontiguousarray would make 0-d arrays 1-d)
        if array.dtype.kind not in ALLOWED_DTYPE_KINDS or array.dtype.fields is not None:
            raise ProtocolError(f"array {key!r} has dtype {array.dtype}, which cannot be sent")
        table.append({"key": key, "dtype": array.dtype.str, "shape": list(array.shape), "nbytes": array.nbytes})
        buffers.append(memoryview(array).cast("B") if array.nbytes else b"")
    body = dict(header)
    body["arrays"] = table
    return [json.dumps(body, allow_nan=False).encode("utf-8"), *buffers]


def _widened(array: np.ndarray) -> np.ndarray:
    """The array as float32 when its dtype is one of ml_dtypes' floats (bfloat16, float8_*: what a
    mixed-precision layer computes in), which float32 holds exactly and plain numpy cannot read."""
    dtype = array.dtype
    if dtype.type.__module__.startswith("ml_dtypes") and "float" in dtype.name:
        return array.astype(np.float32)
    return array


def decode(frames: list) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays of one message; raises ProtocolError on anything malformed.

    Frames may be ``bytes`` or ``zmq.Frame`` (received with ``copy=False``); arrays built
    from frames share their memory (read-only), so no copy is made.
    """
    if not frames:
        raise ProtocolError("empty message")
    raw_header = _frame_bytes(frames[0])
    if len(raw_header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw_header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw_header).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    table = header.pop("arrays", [])
    if not isinstance(table, list):
        raise ProtocolError("header 'arrays' must be a list")
    if len(table) != len(frames) - 1:
        raise ProtocolError(f"header announces {len(table)} arrays but {len(frames) - 1} buffer frames came")
    arrays: dict[str, np.ndarray] = {}
    for entry, frame in zip(table, frames[1:]):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise ProtocolError(f"malformed array entry {entry!r}")
        key = entry["key"]
        if key in arrays:
            raise ProtocolError(f"array {key!r} sent twice")
        dtype = _dtype_from_wire(entry.get("dtype"))
        shape = _shape_from_wire(entry.get("shape"))
        expected = math.prod(shape) * dtype.itemsize
        buffer = _frame_bytes(frame)
        if entry.get("nbytes") != expected or len(buffer) != expected:
            raise ProtocolError(
                f"array {key!r}: shape {list(shape)} of {dtype.str} needs {expected} bytes, "
                f"header says {entry.get('nbytes')!r}, frame has {len(buffer)}"
            )
        arrays[key] = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    return header, arrays


def _frame_bytes(frame) -> memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return memoryview(frame)
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    if buffer is None:
        raise ProtocolError(f"frame of type {type(frame).__name__} is not a buffer")
    return buffer
