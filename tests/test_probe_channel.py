"""The probe's request handling and keys, without a framework: fast."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from kdiff.attach.client import ProbeClient, ProbeUnreachable
from kdiff.attach.snapshot import check_snapshot
from kdiff.probe.channel import ProbeChannel, ProbeSetupError, is_loopback, parse_request
from kdiff.probe.keys import ClientKeys, ServerKeys, make_keys
from kdiff.wire import ProtocolError, encode


def test_the_probe_imports_numpy_and_pyzmq_only():
    code = ("import sys, kdiff.probe; heavy = {'rich', 'h5py', 'tensorflow', 'keras', 'jax', 'torch', 'tf_keras'}; "
            "print(sorted(heavy & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


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


def test_a_snapshot_missing_a_layer_output_is_refused():
    header = {"step": 3, "loss": 0.5, "backend": "tensorflow", "versions": {}, "device": "cpu", "inputs": [],
              "optimizer_slots": [], "capture_seconds": 0.1,
              "layers": [{"name": "d", "class_name": "Dense", "inbound": ["input:x"], "output_shapes": [[None, 2]],
                          "weights": ["d/kernel"]}]}
    arrays = {"model_file": np.zeros(4, np.uint8), "x": np.zeros((1, 2)), "y": np.zeros(1), "output_grad": np.zeros(2),
              "g0.0": np.zeros(2), "w0.0": np.zeros(2), "wg0.0": np.zeros(2)}
    with pytest.raises(ProtocolError, match="missing \\['o0.0'\\]"):
        check_snapshot(header, arrays)
    assert check_snapshot(header, {**arrays, "o0.0": np.zeros(2)}).step == 3
    with pytest.raises(ProtocolError, match="'loss'"):
        check_snapshot({**header, "loss": None}, {**arrays, "o0.0": np.zeros(2)})
