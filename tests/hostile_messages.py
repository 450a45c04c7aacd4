"""Seeded generators of hostile wire messages: valid messages mutated every way a broken or malicious
peer could, for the fuzz tests of every receiver (tests/test_wire_fuzz.py)."""
from __future__ import annotations

import json
import random

import numpy as np

from kdiff.protocol.wire import encode

HOSTILE_DTYPES = ["(-1,)f4", "(2,3)<f4", "(1,)f4", "V8", "|V4", "S3", "|S8", "U2", "<U4", "O", "|O", "f16", "<f16",
                  "g", "M8[ns]", "<m8[s]", "<f4,<i4", "[('a','<f4')]", "float32", "int", "", "f4" * 300, "\x00",
                  "<f4\n", " <f4", "<F4", "b", "?", "e", "<c32", "i16", "u3", "f4 ", "|b1|", "<i8[", "=f8"]
HOSTILE_SHAPES = [[0, 2 ** 63], [2 ** 64], [-1], [1.5], [True], [1] * 33, [1] * 65, "3", None, [[1]], [2 ** 31] * 3,
                  [0] * 40, [2 ** 62, 0], [3, -0], [1e3], {"0": 1}, [None], [2 ** 40, 2 ** 40]]
HOSTILE_VALUES = [None, True, False, -1, 0, 1.5, 1e308, float("nan"), "x", "", [], {}, [1, [2]], {"a": {}},
                  10 ** 30, -(2 ** 63), "\udcff"]
FIELDS = ["type", "seq", "cmd", "args", "result", "error", "request", "layer", "kind", "protocol", "arrays",
          "at_step", "model_hash", "versions", "pid", "message"]


def valid_messages(rng: random.Random) -> list:
    """A few well-formed messages of the kinds each receiver sees."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    headers = [
        {"type": "reply", "seq": 1, "result": {"layers": [{"name": "d", "inbound": ["input:x"]}]}},
        {"type": "part", "seq": 1, "layer": "dense_1", "kind": "output"},
        {"type": "progress", "seq": 1},
        {"type": "error", "seq": 1, "error": {"kind": "internal", "code": "ValueError", "message": "m", "hint": ""}},
        {"type": "request", "request": "hello"},
        {"type": "request", "request": "snapshot", "at_step": 3, "model_hash": "abc"},
        {"seq": 1, "cmd": "forward", "args": {}},
    ]
    header = dict(rng.choice(headers))
    arrays = {}
    if rng.random() < 0.5:
        arrays = {"0": x, "1": np.array([True, False]), "o0": np.zeros((0, 3), np.float64)}
    return encode(header, arrays)


def _mutated_header(rng: random.Random) -> dict:
    header = json.loads(bytes(valid_messages(rng)[0]))
    for _ in range(rng.randint(1, 3)):
        header[rng.choice(FIELDS)] = rng.choice(HOSTILE_VALUES)
    return header


def _array_entry(rng: random.Random) -> tuple[dict, bytes]:
    entry = {"key": rng.choice(["0", "o0", "w1", "", "x" * 2000, 5, None]),
             "dtype": rng.choice(HOSTILE_DTYPES + ["<f4", "|b1", "<i8", "<c16"]),
             "shape": rng.choice(HOSTILE_SHAPES + [[3], [0], [2, 2], []]),
             "nbytes": rng.choice([0, 4, 12, 16, -1, True, "12", 1.0, 2 ** 70])}
    for _ in range(rng.randint(0, 1)):
        entry.pop(rng.choice(list(entry)))
    return entry, bytes(rng.choice([0, 1, 4, 12, 16, 100]))


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([65, 100, 1000, 5000, 20000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    tail = closer * depth if rng.random() < 0.7 else b""
    return b'{"type": "reply", "seq": 1, "result": {"x": ' + opener * depth + b"1" + tail + b"}}"


def _text_frame(rng: random.Random) -> bytes:
    choices = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
        lambda: b"",
        lambda: b"null", lambda: b"[]", lambda: b"1e999", lambda: b'"text"',
        lambda: b'{"seq": ' + b"9" * 5000 + b"}",
        lambda: b'{"type": "reply", "seq": 1, "result": {"x": NaN, "y": -Infinity}}',
        lambda: b'{"type": "reply", "seq": 1, "result": {"\xed\xa0\x80": 1}}',
        lambda: '{"type": "reply", "seq": 1, "result": {"s": "\\ud800"}}'.encode(),
        lambda: b'{"type": "reply", "seq": 1, "result": {"s": "[[[[{{{{"}}',
        lambda: b'{"type": "reply", "seq": 1, "result": {"s": "unterminated [[[[',
        lambda: b'{"a": 1, "a": 2, "arrays": []}',
    ]
    return rng.choice(choices)()


def hostile_message(rng: random.Random) -> list:
    """One message: a valid one, or one of many kinds of broken or malicious ones."""
    kind = rng.randrange(9)
    if kind == 0:
        return valid_messages(rng)
    if kind == 1:
        return [json.dumps(_mutated_header(rng), allow_nan=True).encode(), *valid_messages(rng)[1:]][:1]
    if kind == 2:
        entries = [_array_entry(rng) for _ in range(rng.randint(1, 3))]
        header = {"type": "reply", "seq": 1, "result": {}, "arrays": [e for e, _ in entries]}
        frames = [buffer for _, buffer in entries]
        if rng.random() < 0.2:
            frames = frames[:-1]
        return [json.dumps(header).encode(), *frames]
    if kind == 3:
        return [_deep(rng)]
    if kind == 4:
        frames = valid_messages(rng)
        raw = bytearray(bytes(frames[0]))
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        return [bytes(raw), *frames[1:]]
    if kind == 5:
        frames = valid_messages(rng)
        raw = bytes(frames[0])
        return [raw[: rng.randrange(len(raw))], *frames[1:]]
    if kind == 6:
        frames = [bytes(f) for f in valid_messages(rng)]
        if len(frames) > 1:
            i = rng.randrange(1, len(frames))
            frames[i] = frames[i][: rng.randrange(len(frames[i]) + 1)] + bytes(rng.randint(0, 3))
        return frames
    if kind == 7:
        return [_text_frame(rng), *[bytes(rng.randint(0, 8)) for _ in range(rng.randint(0, 2))]]
    return [rng.choice([None, 5, "text", 1.5, object()])] if rng.random() < 0.3 else []
