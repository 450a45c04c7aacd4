"""Lambda functions stored as marshalled bytecode in Keras 1/2 JSON.

Keras wrote `[code, defaults, closure]` where `code` is `marshal.dumps(func.__code__)`,
as a `raw_unicode_escape` string up to Keras 2.1.1 and as base64 from 2.1.2 on.

Unmarshalling is unsafe (and crashes the interpreter on bytecode of another Python
version), so this module can *read* the function's name without unmarshalling anything:
`function_name` walks the marshal stream by hand. Only `function_from_bytecode`, which the
caller uses when the user said they trust the file, runs `marshal.loads`.
"""
from __future__ import annotations

import base64
import binascii
import marshal
import struct
import sys
import types

from backends.common.errors import ModelInputError

# Code object layouts: (number of raw int32 fields, names of the object fields up to
# co_name, Python versions). The type of the field after code/consts/names tells them apart.
_CODE_LAYOUTS = (
    ("3.11+", 5, ("code", "consts", "names", "localsplusnames", "localspluskinds",
                  "filename", "name")),
    ("3.8-3.10", 6, ("code", "consts", "names", "varnames", "freevars", "cellvars",
                     "filename", "name")),
    ("3.0-3.7", 5, ("code", "consts", "names", "varnames", "freevars", "cellvars",
                    "filename", "name")),
    ("2.7", 4, ("code", "consts", "names", "varnames", "freevars", "cellvars",
                "filename", "name")),
)
_STRING_FIELDS = {"filename", "name"}
_TUPLE_FIELDS = {"consts", "names", "localsplusnames", "varnames", "freevars", "cellvars"}
_BYTES_FIELDS = {"code", "localspluskinds"}


def decode_stored_code(code_text: str) -> bytes:
    """The marshalled bytes of a stored Lambda function (nothing is unmarshalled)."""
    try:  # Keras >= 2.1.2: base64 with a newline every 76 characters
        return base64.b64decode("".join(code_text.split()).encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return code_text.encode("raw_unicode_escape")  # Keras 1 .. 2.1.1


def split_stored_function(stored) -> tuple[str, object, object]:
    """`[code, defaults, closure]` (or a bare code string) -> its three parts."""
    if isinstance(stored, str):
        return stored, None, None
    code, defaults, closure = (list(stored) + [None, None])[:3]
    return code, defaults, closure


def function_name(raw: bytes) -> tuple[str, str] | None:
    """(function name, Python version family) read from marshalled code, or None."""
    for family, n_ints, fields in _CODE_LAYOUTS:
        try:
            name = _MarshalReader(raw, family, n_ints, fields).read_code_name()
        except (IndexError, ValueError, struct.error, KeyError):
            continue
        if name is not None:
            return name, family
    return None


def function_from_bytecode(raw: bytes, defaults, closure, globals_: dict, layer_name: str):
    """Build the function. Only for files the user trusts; only for Python 3.11 bytecode."""
    found = function_name(raw)
    if found is None or found[1] != "3.11+" or sys.version_info[:2] != (3, 11):
        family = found[1] if found else "an unknown version"
        raise ModelInputError(
            f"Lambda layer '{layer_name}' holds bytecode of Python {family}; this worker "
            f"runs Python {sys.version_info[0]}.{sys.version_info[1]} and cannot run it",
            "supply the function with --custom-objects FILE.py instead")
    code = marshal.loads(raw)
    cells = tuple(types.CellType(value) for value in closure) if closure else None
    return types.FunctionType(code, globals_, code.co_name,
                              tuple(defaults) if defaults else None, cells)


class _MarshalReader:
    """Just enough of the marshal format to find a top-level code object's co_name."""

    def __init__(self, data: bytes, family: str, n_ints: int, fields: tuple[str, ...]):
        self.data, self.pos = data, 0
        self.family, self.n_ints, self.fields = family, n_ints, fields
        self.refs: list = []
        self.interned: list = []     # Python 2's string table ('t' / 'R')

    def read_code_name(self):
        kind = self.data[self.pos] & 0x7F
        if chr(kind) != "c":
            return None
        value = self.read()
        return value["name"] if isinstance(value, dict) else None

    def _int32(self) -> int:
        value = struct.unpack_from("<i", self.data, self.pos)[0]
        self.pos += 4
        return value

    def _bytes(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated marshal data")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def read(self):
        code = self.data[self.pos]
        self.pos += 1
        flagged, kind = code & 0x80, chr(code & 0x7F)
        slot = len(self.refs)
        if flagged:
            self.refs.append(None)
        value = self._read_value(kind)
        if flagged:
            self.refs[slot] = value
        return value

    def _read_value(self, kind: str):
        if kind in "0NFTS.":
            return None
        if kind == "i":
            return self._int32()
        if kind == "I":
            return self._bytes(8)
        if kind == "g":
            return self._bytes(8)
        if kind == "y":
            return self._bytes(16)
        if kind == "f":
            return self._bytes(self._bytes(1)[0])
        if kind == "x":
            self._bytes(self._bytes(1)[0])
            return self._bytes(self._bytes(1)[0])
        if kind == "l":
            return self._bytes(2 * abs(self._int32()))
        if kind in "stuaA":
            text = self._bytes(self._int32())
            value = text if kind == "s" else text.decode("utf-8", "surrogatepass")
            if kind == "t":
                self.interned.append(value)
            return value
        if kind in "zZ":
            return self._bytes(self._bytes(1)[0]).decode("ascii")
        if kind == "R":
            return self.interned[self._int32()]
        if kind == "r":
            return self.refs[self._int32()]
        if kind in "([<>":
            return tuple(self.read() for _ in range(self._int32()))
        if kind == ")":
            return tuple(self.read() for _ in range(self._bytes(1)[0]))
        if kind == "{":
            items = []
            while self.data[self.pos] != ord("0"):
                items.append((self.read(), self.read()))
            self.pos += 1
            return tuple(items)
        if kind == "c":
            return self._code()
        raise ValueError(f"unknown marshal type {kind!r}")

    def _code(self) -> dict:
        for _ in range(self.n_ints):
            self._int32()
        value = {}
        for field in self.fields:
            item = self.read()
            if field in _STRING_FIELDS and not isinstance(item, (str, bytes)):
                raise ValueError(f"co_{field} is not a string")
            if field in _TUPLE_FIELDS and not isinstance(item, tuple):
                raise ValueError(f"co_{field} is not a tuple")
            if field in _BYTES_FIELDS and not isinstance(item, bytes):
                raise ValueError(f"co_{field} is not bytes")
            value[field] = item
        if isinstance(value["name"], bytes):
            value["name"] = value["name"].decode("latin-1")
        self._skip_code_tail()
        return value

    def _skip_code_tail(self):
        """Fields after co_name, so that nested code objects leave the stream aligned."""
        after_name = ("qualname", "int", "linetable", "exceptiontable") \
            if self.family == "3.11+" else ("int", "lnotab")
        for item in after_name:
            if item == "int":
                self._int32()
            else:
                self.read()
