"""The wire format between coordinator, workers and probe: one JSON header frame, then one raw
buffer frame per array. Nothing is pickled.

The header lists the arrays it carries: ``{"arrays": [{"key", "dtype", "shape", "nbytes"}, ...]}``.
``decode`` is the only way a receiver reads a message, and whatever bytes arrive it raises nothing
but ``ProtocolError``:
- the header's size and its JSON nesting depth are bounded, and checked before it is parsed;
- every field the protocol defines (``type``, ``seq``, ``cmd``, ``args``, ``result``, ``error``, ...)
  must have its type when present (``HEADER_FIELDS``);
- an array's dtype is one of the plain numeric and bool dtypes (``WIRE_DTYPE``: no object, string,
  structured or subarray dtypes), its shape a list of at most ``MAX_DIMS`` non-negative ints whose
  element count and byte size numpy can hold, and its frame exactly ``prod(shape) * itemsize`` bytes,
  as the declared ``nbytes`` says.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

import numpy as np

# 1: the first release. 2: workers answer 'forward_backward' (parts carry a "kind"), and a probe's
# snapshot holds models with several inputs and outputs, its arrays sent without copies.
# 3: array keys from kdiff.protocol.vocabulary (a gradient part's output gradients are 'g', its
# weight gradients 'dw'; optimizer_step takes 'dw').
PROTOCOL_VERSION = 3

# Array kinds allowed on the wire: bool, signed and unsigned ints, floats, complex.
ALLOWED_DTYPE_KINDS = frozenset("biufc")
# ... spelled as numpy's dtype.str spells them, and nothing else: no subarray ("(2,)f4"), structured,
# object, string or platform-dependent (long double) dtype ever reaches np.dtype()
WIRE_DTYPE = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16))")
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64          # JSON nesting of a header: a layer description is about 6 deep
MAX_DIMS = 32           # numpy 1.x's limit (the Theano worker runs numpy 1.23); numpy 2 allows 64
MAX_ARRAYS = 100_000
MAX_KEY_LENGTH = 1024
_MAX_BYTES = 2 ** 62    # numpy refuses arrays whose byte size does not fit in an intp

# Fields whose type the protocol fixes, wherever they appear in a header (None: may be null).
HEADER_FIELDS: dict[str, tuple] = {
    "type": (str,), "seq": (int, None), "cmd": (str,), "args": (dict,), "result": (dict,),
    "error": (dict,), "request": (str,), "layer": (str,), "kind": (str,), "protocol": (int,),
    "backend": (str,), "pid": (int,), "versions": (dict,), "device": (str,), "message": (str,),
}
ERROR_FIELDS = ("kind", "code", "message", "hint", "traceback")  # an 'error' object's fields: strings

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


class ProtocolError(Exception):
    """A message does not follow the wire format."""


def _dtype_from_wire(text: Any) -> np.dtype:
    if not isinstance(text, str):
        raise ProtocolError(f"dtype must be a string, got {type(text).__name__}")
    if not WIRE_DTYPE.fullmatch(text):
        if len(text) > 40:
            text = text[:40] + "..."
        raise ProtocolError(f"unknown dtype {text!r}, or one not allowed on the wire (only plain numeric and bool "
                            "dtypes are)")
    return np.dtype(text)


def _shape_from_wire(shape: Any, itemsize: int) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(f"shape must be a list of non-negative integers, got {_short(shape)}")
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"shape has {len(shape)} dimensions; at most {MAX_DIMS} are allowed")
    if math.prod(max(d, 1) for d in shape) * itemsize >= _MAX_BYTES:
        raise ProtocolError(f"shape {_short(shape)} is larger than any array can be")
    return tuple(shape)


def nesting_depth(raw: bytes) -> int:
    """How deeply a JSON text nests its arrays and objects (brackets inside strings do not count);
    measured without parsing it, so that no parser recurses into a hostile header."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = np.frombuffer(brackets, dtype=np.uint8)
    return int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max())


def check_fields(header: dict) -> None:
    """Every field the protocol defines has its type; an 'error' object's fields are strings."""
    for name, types in HEADER_FIELDS.items():
        if name not in header:
            continue
        value = header[name]
        if value is None and None in types:
            continue
        wanted = tuple(t for t in types if t is not None)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join("null" if t is None else t.__name__ for t in types)
            raise ProtocolError(f"field {name!r} must be {names}, got {type(value).__name__}")
    error = header.get("error")
    if error is not None:
        for name in ERROR_FIELDS:
            if error.get(name) is not None and not isinstance(error[name], str):
                raise ProtocolError(f"field 'error.{name}' must be a string, got {type(error[name]).__name__}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


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


def decode(frames: list, max_header_bytes: int = MAX_HEADER_BYTES) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays of one message; raises ProtocolError, and nothing else, on anything malformed.

    Frames may be ``bytes`` or ``zmq.Frame`` (received with ``copy=False``); arrays built
    from frames share their memory (read-only), so no copy is made.
    """
    try:
        return _decode(frames, max_header_bytes)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a receiver must never see anything but the protocol's error
        raise ProtocolError(f"malformed message ({type(exc).__name__}: {_short(str(exc))})") from exc


def _decode(frames: list, max_header_bytes: int) -> tuple[dict, dict[str, np.ndarray]]:
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError("empty message")
    if len(frames) - 1 > MAX_ARRAYS:
        raise ProtocolError(f"message of {len(frames)} frames; at most {MAX_ARRAYS} arrays are allowed")
    raw_header = _frame_bytes(frames[0])
    if len(raw_header) > max_header_bytes:
        raise ProtocolError(f"header of {len(raw_header)} bytes exceeds {max_header_bytes}")
    raw = bytes(raw_header)
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise ProtocolError(f"header nests {depth} levels deep; at most {MAX_DEPTH} are allowed")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    table = header.pop("arrays", [])
    if not isinstance(table, list):
        raise ProtocolError("header 'arrays' must be a list")
    check_fields(header)
    if len(table) != len(frames) - 1:
        raise ProtocolError(f"header announces {len(table)} arrays but {len(frames) - 1} buffer frames came")
    arrays: dict[str, np.ndarray] = {}
    for entry, frame in zip(table, frames[1:]):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) \
                or len(entry["key"]) > MAX_KEY_LENGTH:
            raise ProtocolError(f"malformed array entry {_short(entry)}")
        key = entry["key"]
        if key in arrays:
            raise ProtocolError(f"array {key!r} sent twice")
        dtype = _dtype_from_wire(entry.get("dtype"))
        shape = _shape_from_wire(entry.get("shape"), dtype.itemsize)
        expected = math.prod(shape) * dtype.itemsize
        buffer = _frame_bytes(frame)
        nbytes = entry.get("nbytes")
        if type(nbytes) is not int or nbytes != expected or len(buffer) != expected:
            raise ProtocolError(
                f"array {key!r}: shape {list(shape)} of {dtype.str} needs {expected} bytes, "
                f"header says {_short(nbytes)}, frame has {len(buffer)}"
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
