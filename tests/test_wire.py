import json

import numpy as np
import pytest

from kdiff.protocol.wire import ProtocolError, decode, encode


def test_round_trip_keeps_dtype_shape_values_and_header():
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "ids": np.array([[1, 2]], dtype=np.int64),
              "empty": np.zeros((0, 5), dtype=np.float64), "flag": np.array(True)}
    header, out = decode(encode({"type": "reply", "seq": 7}, arrays))
    assert header == {"type": "reply", "seq": 7}
    for key, value in arrays.items():
        assert out[key].dtype == value.dtype and out[key].shape == value.shape
        np.testing.assert_array_equal(out[key], value)


def test_non_contiguous_arrays_are_sent_as_their_values():
    array = np.arange(20, dtype=np.float32).reshape(4, 5).T
    _, out = decode(encode({}, {"t": array}))
    np.testing.assert_array_equal(out["t"], array)


def test_encode_refuses_object_arrays():
    with pytest.raises(ProtocolError, match="cannot be sent"):
        encode({}, {"o": np.array([object()], dtype=object)})


def _frames(entry, buffer):
    return [json.dumps({"type": "reply", "seq": 1, "arrays": [entry]}).encode(), buffer]


@pytest.mark.parametrize("entry, buffer, message", [
    ({"key": "a", "dtype": "|O", "shape": [1], "nbytes": 8}, b"\0" * 8, "not allowed"),
    ({"key": "a", "dtype": "<U4", "shape": [1], "nbytes": 16}, b"\0" * 16, "not allowed"),
    ({"key": "a", "dtype": [("x", "<f4")], "shape": [1], "nbytes": 4}, b"\0" * 4, "dtype must be a string"),
    ({"key": "a", "dtype": "<f4", "shape": [10], "nbytes": 40}, b"\0" * 12, "needs 40 bytes"),
    ({"key": "a", "dtype": "<f4", "shape": [3], "nbytes": 40}, b"\0" * 12, "header says 40"),
    ({"key": "a", "dtype": "<f4", "shape": [-3], "nbytes": 12}, b"\0" * 12, "non-negative"),
    ({"key": "a", "dtype": "<f4", "shape": "3", "nbytes": 12}, b"\0" * 12, "non-negative"),
    ({"key": "a", "dtype": "nonsense", "shape": [3], "nbytes": 12}, b"\0" * 12, "unknown dtype"),
    ({"dtype": "<f4", "shape": [3], "nbytes": 12}, b"\0" * 12, "malformed array entry"),
])
def test_decode_rejects_bad_array_entries(entry, buffer, message):
    with pytest.raises(ProtocolError, match=message):
        decode(_frames(entry, buffer))


@pytest.mark.parametrize("frames, message", [
    ([], "empty"),
    ([b"\xff\xfe"], "not JSON"),
    ([b"[1, 2]"], "JSON object"),
    ([b'{"arrays": 5}'], "must be a list"),
    ([b'{"arrays": []}', b"extra"], "0 arrays but 1 buffer"),
])
def test_decode_rejects_malformed_messages(frames, message):
    with pytest.raises(ProtocolError, match=message):
        decode(frames)


def test_decode_rejects_a_key_sent_twice():
    entry = {"key": "a", "dtype": "<f4", "shape": [1], "nbytes": 4}
    frames = [json.dumps({"arrays": [entry, entry]}).encode(), b"\0" * 4, b"\0" * 4]
    with pytest.raises(ProtocolError, match="sent twice"):
        decode(frames)
