"""Seeded fuzzing of the wire: the decoder and every receiver (a worker, the coordinator, the probe)
meet thousands of hostile messages (tests/hostile_messages.py); the decoder raises nothing but
ProtocolError, memory stays bounded, and each receiver answers or names the fault and goes on."""
import random
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import zmq

from kdiff.errors import InputError, WorkerFailure
from kdiff.probe.channel import ProbeChannel
from kdiff.protocol.wire import ProtocolError, decode, encode
from kdiff.workers import WorkerPool, WorkerProcess
from tests.hostile_messages import hostile_message, valid_messages


def _sendable(frames: list) -> bool:
    return bool(frames) and all(isinstance(frame, (bytes, bytearray, memoryview)) for frame in frames)


def test_the_decoder_raises_only_protocol_errors_and_stays_within_its_input_memory():
    rng = random.Random(20261202)
    outcomes = {"decoded": 0, "refused": 0}
    reasons = set()
    tracemalloc.start()
    try:
        for _ in range(6000):
            frames = hostile_message(rng)
            try:
                header, arrays = decode(frames)
            except ProtocolError as exc:
                outcomes["refused"] += 1
                reasons.add(str(exc).split(":")[0][:30])
                continue
            assert isinstance(header, dict) and "arrays" not in header
            assert all(isinstance(a, np.ndarray) and a.dtype.kind in "biufc" for a in arrays.values())
            outcomes["decoded"] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcomes["decoded"] > 300 and outcomes["refused"] > 3000, outcomes  # the fuzz reaches both ends
    assert len(reasons) > 15
    assert peak < 16 << 20, f"decoding hostile messages peaked at {peak / 2 ** 20:.1f} MiB"


@pytest.mark.parametrize("text, message", [
    (b"[" * 1000 + b"]" * 1000, "nests 1000 levels"),
    (b'{"a": "' + b"[" * 1000 + b'"}', None),  # brackets inside a string do not nest
    (b'{"type": "reply", "seq": true}', "'seq' must be int or null"),
    (b'{"type": "reply", "seq": 1, "error": {"message": 5}}', "'error.message' must be a string"),
    (b'{"seq": ' + b"9" * 5000 + b"}", "malformed message"),
])
def test_the_decoder_checks_depth_before_parsing_and_the_fields_types(text, message):
    if message is None:
        assert decode([text])[0] == {"a": "[" * 1000}
    else:
        with pytest.raises(ProtocolError, match=message):
            decode([text])


def test_a_worker_answers_every_hostile_call_with_an_error_and_goes_on_serving(tmp_path):
    model = tmp_path / "model.json"
    model.write_text("{}")
    rng = random.Random(7)
    with WorkerPool() as pool:
        pool.spawn("a", "fake", sys.executable, {}, worker_module="tests.fake_worker")
        pool.wait_hello("a")
        socket = pool.sockets["a"]
        sent = 0
        for _ in range(600):
            frames = hostile_message(rng)
            if not _sendable(frames):
                continue
            socket.send_multipart([b"a", *frames])
            sent += 1
        answers = []
        deadline = time.monotonic() + 60
        while len(answers) < sent and time.monotonic() < deadline:
            if socket.poll(1000):
                _, *frames = socket.recv_multipart()
                header, _ = decode(frames)
                if header["type"] != "progress":
                    answers.append(header)
        assert len(answers) == sent and pool.all_alive()
        assert {answer["type"] for answer in answers} == {"error"}
        assert sum(answer["error"]["code"] == "malformed-call" for answer in answers) > sent // 2
        pool.call("a", "load", {"model": str(model)})  # and it still works
        seq = pool.send("a", "forward", arrays={"0": np.ones((2, 4), np.float32)})
        layers = []
        while True:
            _, header, arrays = pool.receive_any({"a": seq}, time.monotonic() + 30)
            if header["type"] == "reply":
                break
            layers.append(header["layer"])
        assert layers == ["dense_1", "relu_1", "dense_2"]


def test_the_coordinator_names_every_hostile_answer_as_the_workers_fault(tmp_path):
    rng = random.Random(11)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        with WorkerPool() as pool:
            endpoint = pool._bind("b")
            pool.workers["b"] = WorkerProcess("b", "hostile", sys.executable, sleeper, tmp_path / "log")
            worker = zmq.Context.instance().socket(zmq.DEALER)
            worker.setsockopt(zmq.IDENTITY, b"b")
            worker.setsockopt(zmq.LINGER, 0)
            worker.connect(endpoint)
            worker.send_multipart(encode({"type": "hello"}))  # the coordinator knows this peer once it spoke
            assert pool.sockets["b"].poll(5000)
            pool.sockets["b"].recv_multipart()
            pool.send("b", "load")  # call 1, so that answers to it are in sequence
            outcomes = {"kept": 0, "failure": 0, "input-error": 0}
            for _ in range(1500):
                frames = hostile_message(rng)
                if not _sendable(frames):
                    continue
                worker.send_multipart(frames)
                assert pool.sockets["b"].poll(5000)
                pool.inbox.clear()
                pool.unanswered["b"] = {1}
                try:
                    pool._read_one("b")
                    outcomes["kept"] += 1
                except WorkerFailure as failure:
                    assert failure.message.startswith("worker b (hostile) failed during 'load': ")
                    outcomes["failure"] += 1
                except InputError:
                    outcomes["input-error"] += 1  # an 'error' of kind 'input': the user's file, as the worker says
            worker.close()
            pool.keep_logs = False
        assert outcomes["kept"] > 50 and outcomes["failure"] > 900, outcomes
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_probe_answers_every_hostile_request_and_never_raises():
    rng = random.Random(3)
    channel = ProbeChannel("tcp://127.0.0.1:0")
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(channel.endpoint)
    try:
        sent = answered = accepted = 0
        for _ in range(1500):
            frames = hostile_message(rng)
            if not _sendable(frames) or sum(len(bytes(f)) for f in frames) > 60_000:
                continue  # (a larger message drops the peer, by design)
            client.send_multipart(frames)
            sent += 1
            assert channel.socket.poll(5000)
            found = channel.requests()  # a malformed request is answered with an error inside
            if not found:
                assert client.poll(5000)
                header, _ = decode(client.recv_multipart())
                assert header["type"] == "error"
                answered += 1
            accepted += len(found)
        assert sent > 1000 and answered + accepted == sent and answered > sent // 2
        assert channel.requests() == []
        client.send_multipart(encode({"type": "request", "request": "hello"}))  # and it still serves
        for _ in range(100):
            if channel.requests():
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the probe stopped answering after the fuzz")
    finally:
        client.close()
        channel.close()


def test_valid_messages_of_every_kind_still_decode():
    rng = random.Random(5)
    for _ in range(50):
        header, _ = decode(valid_messages(rng))
        assert header.get("type") in ("reply", "part", "progress", "error", "request") or header["cmd"] == "forward"
