"""The probe's request handling and keys, without a framework: fast."""
import subprocess
import sys
import time

import numpy as np
import pytest

from kdiff.attach.client import ProbeClient, ProbeUnreachable
from kdiff.attach.snapshot import check_snapshot, write_snapshot
from kdiff.probe.channel import ProbeChannel, ProbeSetupError, is_loopback, parse_request
from kdiff.protocol.keys import ClientKeys, ServerKeys, make_keys
from kdiff.protocol.wire import ProtocolError, encode


def test_the_probe_imports_numpy_and_pyzmq_only():
    code = ("import sys, kdiff.probe; heavy = {'rich', 'h5py', 'tensorflow', 'keras', 'jax', 'torch', 'tf_keras'}; "
            "print(sorted(heavy & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_every_backend_has_the_same_capture_functions_and_theanos_refuse():
    """The probe finds its backend's capture module through backends.registry; each one fills the same
    template, and the original Keras on Theano's says, whichever is called, that attach does not go there."""
    from backends.modern_keras.capture import CAPTURE_FUNCTIONS
    from backends.registry import BACKENDS
    from kdiff.protocol.capture import CaptureError

    for backend in BACKENDS.values():
        module = backend.module("capture")
        assert [name for name in CAPTURE_FUNCTIONS if not callable(getattr(module, name, None))] == [], backend.name
    theano = BACKENDS["theano"].module("capture")
    for name, arguments in [("capture", (None,)), ("compile_one_pass", (None,)), ("read_variables", ([],)),
                            ("device", ()), ("versions", (None,)), ("take_batch", (None, ()))]:
        with pytest.raises(CaptureError, match="attaches to Keras 3 and tf_keras training jobs"):
            getattr(theano, name)(*arguments)


@pytest.mark.parametrize("header, message", [
    ({"type": "request", "request": "exec", "code": "import os"}, "unknown request 'exec'"),
    ({"type": "call", "request": "hello"}, "unknown request"),
    ({"type": "request", "request": "snapshot", "at_step": -1}, "non-negative"),
    ({"type": "request", "request": "snapshot", "at_step": "5"}, "non-negative"),
])
def test_requests_outside_the_fixed_set_are_refused(header, message):
    with pytest.raises(ProtocolError, match=message):
        parse_request(b"peer", encode(header))


def test_a_request_carrying_arrays_is_refused():
    with pytest.raises(ProtocolError, match="no arrays"):
        parse_request(b"peer", encode({"type": "request", "request": "hello"}, {"x": np.zeros(3)}))


def test_a_malformed_request_is_answered_with_an_error_and_the_probe_goes_on():
    channel = ProbeChannel("tcp://127.0.0.1:*")
    client = ProbeClient(channel.endpoint)
    try:
        client.socket.send_multipart([b"not json"])
        client.request("hello")
        deadline = time.monotonic() + 5
        found = []
        while not found and time.monotonic() < deadline:
            found = channel.requests()
        assert [request.name for request in found] == ["hello"]
        with pytest.raises(ProbeUnreachable, match="header is not JSON"):
            client.receive({"hello"}, time.monotonic() + 5)
    finally:
        client.close()
        channel.close()


def test_a_non_loopback_endpoint_needs_keys():
    assert is_loopback("tcp://127.0.0.1:5557") and is_loopback("tcp://[::1]:5557") and not is_loopback("tcp://*:5557")
    with pytest.raises(ProbeSetupError, match="without authentication"):
        ProbeChannel("tcp://0.0.0.0:5557")


def test_only_a_listed_client_key_gets_through(tmp_path):
    make_keys(str(tmp_path / "right"))
    make_keys(str(tmp_path / "wrong"))
    channel = ProbeChannel("tcp://127.0.0.1:*", ServerKeys.load(str(tmp_path / "right")))
    wrong = ClientKeys.load(str(tmp_path / "wrong"))
    impostor = ClientKeys(wrong.public, wrong.secret, ClientKeys.load(str(tmp_path / "right")).server_public)
    clients = {name: ProbeClient(channel.endpoint, keys)
               for name, keys in (("right", ClientKeys.load(str(tmp_path / "right"))), ("impostor", impostor))}
    try:
        for client in clients.values():
            client.request("hello")
        deadline = time.monotonic() + 3
        received = []
        while time.monotonic() < deadline:
            received += channel.requests()
            time.sleep(0.05)
        assert len(received) == 1   # the impostor's hello never reaches the probe
        channel.send(received[0].peer, channel.hello(0, "tensorflow", "m"))
        assert clients["right"].receive({"hello"}, time.monotonic() + 5)[0]["model"] == "m"
    finally:
        for client in clients.values():
            client.close()
        channel.close()


def test_keys_are_not_overwritten(tmp_path):
    make_keys(str(tmp_path))
    with pytest.raises(FileExistsError):
        make_keys(str(tmp_path))


SNAPSHOT_HEADER = {"step": 3, "loss": 0.5, "backend": "tensorflow", "versions": {}, "device": "cpu", "inputs": [{}],
                   "outputs": ["d"], "optimizer_slots": [], "capture_seconds": 0.1, "model_hash": "ab12",
                   "layers": [{"name": "d", "class_name": "Dense", "inbound": ["input:x"], "output_shapes": [[None, 2]],
                               "weights": ["d/kernel"]}]}
SNAPSHOT_ARRAYS = {"model_file": np.zeros(4, np.uint8), "x0": np.zeros((1, 2)), "y0": np.zeros(1), "p0": np.zeros(2),
                   "g0.0": np.zeros(2), "w0.0": np.zeros(2), "wg0.0": np.zeros(2)}


def test_a_snapshot_missing_a_layer_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    with pytest.raises(ProtocolError, match="missing \\['o0.0'\\]"):
        check_snapshot(SNAPSHOT_HEADER, SNAPSHOT_ARRAYS)
    assert check_snapshot(SNAPSHOT_HEADER, {**SNAPSHOT_ARRAYS, "o0.0": np.zeros(2)}).step == 3
    with pytest.raises(ProtocolError, match="'loss'"):
        check_snapshot({**SNAPSHOT_HEADER, "loss": None}, {**SNAPSHOT_ARRAYS, "o0.0": np.zeros(2)})


def test_a_snapshot_of_two_inputs_and_two_outputs_needs_each_ones_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    header = {**SNAPSHOT_HEADER, "inputs": [{}, {}], "outputs": ["d", "e"]}
    arrays = {**SNAPSHOT_ARRAYS, "o0.0": np.zeros(2), "x1": np.ones((1, 3)), "y1": np.zeros(1)}
    with pytest.raises(ProtocolError, match="missing \\['p1'\\]"):
        check_snapshot(header, arrays)
    snapshot = check_snapshot(header, {**arrays, "p1": np.ones(2)})
    assert [x.shape for x in snapshot.inputs] == [(1, 2), (1, 3)] and len(snapshot.output_grads) == 2


def test_the_model_file_is_kept_by_hash_and_needed_only_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    without_file = {key: value for key, value in SNAPSHOT_ARRAYS.items() if key != "model_file"}
    without_file["o0.0"] = np.zeros(2)
    with pytest.raises(ProtocolError, match="no model file came"):
        check_snapshot(SNAPSHOT_HEADER, without_file)
    check_snapshot(SNAPSHOT_HEADER, {**without_file, "model_file": np.arange(5, dtype=np.uint8)})
    snapshot = check_snapshot(SNAPSHOT_HEADER, without_file)
    model = write_snapshot(snapshot, tmp_path / "replay")
    assert model.read_bytes() == bytes(range(5))
    assert "model_file" not in snapshot.arrays
    with pytest.raises(ProtocolError, match="model_hash"):
        check_snapshot({**SNAPSHOT_HEADER, "model_hash": "../../etc"}, without_file)


@pytest.mark.parametrize("model_hash", ["../x", "ABC", 5, "a" * 65])
def test_a_snapshot_request_names_a_model_hash_only_as_hex(model_hash):
    with pytest.raises(ProtocolError, match="model_hash"):
        parse_request(b"peer", encode({"type": "request", "request": "snapshot", "model_hash": model_hash}))
    assert parse_request(b"peer", encode({"type": "request", "request": "snapshot", "model_hash": "0f" * 16})
                         ).model_hash == "0f" * 16
