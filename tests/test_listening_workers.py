"""Workers that listen (backends.listen): warm workers kept between runs (kdiff.warm, ``--warm``) and a
side on another host (``kdiff worker --listen``, ``--b BACKEND@ENDPOINT --keys DIR``), on the numpy
stand-in worker (tests/fake_worker.py) over the real protocol: sessions, reuse of a loaded model,
files sent over the wire, keys, busy and vanished coordinators, and hostile bytes. The real
frameworks' runs are in tests/test_listening_workers_real.py."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from kdiff import warm
from kdiff.cli_arguments import side_parts
from kdiff.diff import run_diff
from kdiff.errors import InputError, UsageError
from kdiff.progress import Progress
from kdiff.protocol import vocabulary
from kdiff.protocol.keys import make_keys
from kdiff.protocol.wire import decode, encode
from kdiff.session import DiffOptions, DiffSession, Side, client_keys
from kdiff.workers import SOURCE_ROOT, worker_environment

OPTIONS = DiffOptions(derived_tolerances=True, gradients=False)
FAKE = "tests.fake_worker"


class Logged(Progress):
    def __init__(self):
        self.lines = []

    def log(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDIFF_WARM_DIR", raising=False)
    model = tmp_path / "model.json"  # the stand-in seeds its weights from these bytes
    model.write_text('{"class_name": "Sequential", "config": {"layers": []}}')
    sample = tmp_path / "sample.npy"
    np.save(sample, np.random.default_rng(0).standard_normal((4, 2, 6, 5)).astype(np.float32))
    yield str(model), str(sample)
    warm.stop_all()


def fake_side(name: str, model: str, fault: str = "", endpoint: str | None = None) -> Side:
    options = {"model": "conv", **({"fault": fault} if fault else {})}
    return Side(name, "fake", model, python=None if endpoint else sys.executable, worker_module=FAKE,
                worker_options=options, endpoint=endpoint)


def listening_processes() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "backends.listen"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if int(pid) != os.getpid()]


def start_listening(endpoint: str, *extra: str, fault: str = "") -> subprocess.Popen:
    command = [sys.executable, "-m", "backends.listen", "--backend", "fake", "--worker-module", FAKE,
               "--endpoint", endpoint, "--option", "model=conv", *extra]
    if fault:
        command += ["--option", f"fault={fault}"]
    return subprocess.Popen(command, env=worker_environment(), cwd=str(SOURCE_ROOT), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_listening(process: subprocess.Popen) -> str:
    line = process.stdout.readline().decode()
    assert "listening on" in line, line + process.stdout.read().decode()
    return line.split("listening on ")[1].split()[0]


@pytest.fixture
def listening(tmp_path):
    started = []

    def start(*extra, fault="", endpoint="tcp://127.0.0.1:*"):
        process = start_listening(endpoint, *extra, fault=fault)
        started.append(process)
        return process, wait_listening(process)
    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


# ---- warm workers ------------------------------------------------------------------------------------

def test_a_second_warm_run_reuses_both_workers_and_their_model_and_reports_the_same(files):
    model, sample = files
    first_progress, second_progress = Logged(), Logged()
    options = DiffOptions(derived_tolerances=True, gradients=False, warm=True)
    first = run_diff(fake_side("a", model), fake_side("b", model, "flip:conv_1"), sample, options, first_progress)
    slots = warm.slots()
    assert sorted(slot["backend"] for slot in slots) == ["fake", "fake"] and not any(s["busy"] for s in slots)
    pids = sorted(slot["pid"] for slot in slots)
    second = run_diff(fake_side("a", model), fake_side("b", model, "flip:conv_1"), sample, options, second_progress)
    assert sorted(slot["pid"] for slot in warm.slots()) == pids            # the same two processes
    assert any("had this model loaded already" in line for line in second_progress.lines)
    assert not any("had this model loaded already" in line for line in first_progress.lines)
    # the first run's proven flip was put back on side B's model: the second finds and proves it again
    assert [f.cause for f in second.findings] == [f.cause for f in first.findings] == ["conv-kernel-flip"]
    assert second.to_json()["layers"] == first.to_json()["layers"]
    assert second.repaired.exit_code == 0


def test_a_changed_model_file_is_loaded_afresh_by_the_warm_worker(files, tmp_path):
    model, sample = files
    options = DiffOptions(derived_tolerances=True, gradients=False, warm=True)
    run_diff(fake_side("a", model), fake_side("b", model), sample, options, Logged())
    other = tmp_path / "other.json"
    other.write_text('{"class_name": "Sequential", "config": {"layers": [], "name": "other"}}')
    progress = Logged()
    report = run_diff(fake_side("a", str(other)), fake_side("b", str(other)), sample, options, progress)
    assert not any("loaded already" in line for line in progress.lines)
    assert report.exit_code == 0


def test_a_run_holding_the_warm_worker_makes_the_next_run_take_another_slot(files):
    model, sample = files
    options = DiffOptions(derived_tolerances=True, gradients=False, warm=True)
    with DiffSession(fake_side("a", model), fake_side("b", model), options, Logged()) as holding:
        busy = {slot["slot"] for slot in warm.slots() if slot["busy"]}
        assert len(busy) == 2
        report = run_diff(fake_side("a", model), fake_side("b", model), sample, options, Logged())
        assert report.exit_code == 0
        assert holding.pool.all_alive()
    assert len(warm.slots()) == 4 and not any(slot["busy"] for slot in warm.slots())


def test_kdiff_serve_lists_and_stops_the_warm_workers_and_none_is_left(files, capsys):
    from kdiff.cli import main

    model, sample = files
    run_diff(fake_side("a", model), fake_side("b", model), sample,
             DiffOptions(derived_tolerances=True, gradients=False, warm=True), Logged())
    pids = [slot["pid"] for slot in warm.slots()]
    assert len(pids) == 2
    assert main(["serve"]) == 0
    assert "idle" in capsys.readouterr().out
    assert main(["serve", "--stop"]) == 0
    assert "stopped 2 warm worker(s)" in capsys.readouterr().out
    assert not [pid for pid in pids if warm.is_listening_worker(pid)]
    assert warm.slots() == []
    assert main(["serve"]) == 0 and "no warm workers" in capsys.readouterr().out


def test_a_warm_worker_stops_by_itself_when_idle(files, monkeypatch):
    model, sample = files
    monkeypatch.setenv("KDIFF_WARM_IDLE", "1")
    run_diff(fake_side("a", model), fake_side("b", model), sample,
             DiffOptions(derived_tolerances=True, gradients=False, warm=True), Logged())
    pids = [slot["pid"] for slot in warm.slots()]
    deadline = time.monotonic() + 15
    while any(warm.is_listening_worker(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(warm.is_listening_worker(pid) for pid in pids)
    assert not list(Path(warm.warm_dir()).glob("*.json"))


def test_without_warm_no_listening_worker_is_started(files):
    model, sample = files
    run_diff(fake_side("a", model), fake_side("b", model), sample, OPTIONS, Logged())
    assert warm.slots() == []


# ---- a side on another host --------------------------------------------------------------------------

def test_a_side_on_another_host_is_sent_the_files_and_writes_the_repair_back(files, listening, tmp_path):
    model, sample = files
    _, endpoint = listening(fault="flip:conv_1")
    with DiffSession(fake_side("a", model), fake_side("b", model, endpoint=endpoint), OPTIONS, Logged()) as session:
        array = session.load_sample(sample)
        report = session.compare(array, sample)
        assert report.first_divergence[1].name == "conv_1" and session.backend_infos()[1].python == f"on {endpoint}"
        from kdiff.diagnosis.report import diagnosed

        found = diagnosed(session, array, report, Progress())
        assert [f.cause for f in found.findings] == ["conv-kernel-flip"] and found.repaired.exit_code == 0
        written = session.clients["b"].save(str(tmp_path / "fixed"))
        a_kernel = session.clients["a"].weights("conv_1")[0][1]
    assert written == [str(tmp_path / "fixed" / "weights.npz")]
    assert np.array_equal(np.load(written[0])["conv_1__kernel"], a_kernel)  # the repaired kernel, written here


def test_keys_are_required_off_loopback_and_a_wrong_key_is_refused_at_once(files, listening, tmp_path):
    model, sample = files
    keys, other = tmp_path / "keys", tmp_path / "other"
    make_keys(str(keys))
    make_keys(str(other))
    _, endpoint = listening("--keys", str(keys))
    with pytest.raises(UsageError, match="not a loopback address"):
        client_keys(None, "tcp://10.1.2.3:5570")
    right = DiffOptions(derived_tolerances=True, gradients=False, keys=str(keys))
    report = run_diff(fake_side("a", model), fake_side("b", model, endpoint=endpoint), sample, right, Logged())
    assert report.exit_code == 0
    # a client key the worker does not authorize (the worker's own public key right): refused by its ZAP handler
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "probe.key").write_bytes((keys / "probe.key").read_bytes())
    for name in ("client.key", "client.key_secret"):
        (mixed / name).write_bytes((other / name).read_bytes())
    for folder in (other, mixed):
        started = time.monotonic()
        with pytest.raises(InputError, match="keys") as raised:
            run_diff(fake_side("a", model), fake_side("b", model, endpoint=endpoint), sample,
                     DiffOptions(derived_tolerances=True, gradients=False, keys=str(folder)), Logged())
        assert raised.value.reference == "worker-refused-keys" and time.monotonic() - started < 30
    with pytest.raises(InputError) as raised:  # no keys at all, to a worker that wants them
        run_diff(fake_side("a", model), fake_side("b", model, endpoint=endpoint), sample, OPTIONS, Logged())
    assert raised.value.reference == "worker-handshake-failed"


def test_a_worker_listening_off_loopback_without_keys_refuses_to_start():
    process = start_listening("tcp://0.0.0.0:5599")
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 2 and "kdiff keys DIR" in output


def test_nothing_listening_is_said_as_such(files):
    model, sample = files
    with pytest.raises(InputError) as raised:
        run_diff(fake_side("a", model), fake_side("b", model, endpoint="tcp://127.0.0.1:9"), sample, OPTIONS, Logged())
    assert raised.value.reference == "worker-unreachable"


def test_a_second_coordinator_is_told_the_worker_is_busy_and_gets_it_once_the_first_is_gone(files, listening):
    model, sample = files
    _, endpoint = listening("--lease", "2")
    context = zmq.Context()
    try:
        first = context.socket(zmq.DEALER)
        first.connect(endpoint)
        first.send_multipart(encode({"seq": 0, "cmd": "hello"}))
        assert first.poll(20000)
        header, _ = decode(first.recv_multipart())
        assert header["type"] == "hello" and isinstance(header["session"], str)
        with pytest.raises(InputError) as raised:
            run_diff(fake_side("a", model), fake_side("b", model, endpoint=endpoint), sample, OPTIONS, Logged())
        assert raised.value.reference == "worker-busy"
        first.close(linger=0)  # gone without a word, and without pings: its session ends after --lease
        time.sleep(3)
        report = run_diff(fake_side("a", model), fake_side("b", model, endpoint=endpoint), sample, OPTIONS, Logged())
        assert report.exit_code == 0
    finally:
        context.destroy(linger=0)


def test_hostile_bytes_get_errors_and_the_worker_still_serves(files, listening):
    model, sample = files
    process, endpoint = listening()
    rng = random.Random(7)
    context = zmq.Context()
    try:
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
        messages = [[b""], [b"{"], [b"null"], [b"[]"], [encode({"type": "ping", "session": "nope"})[0]],
                    encode({"seq": "1", "cmd": "forward"}), encode({"seq": 3, "cmd": "forward"}),
                    [b'{"seq": 1, "cmd": "load", "arrays": [{"key": "f:model", "dtype": "|u1", "shape": [5], '
                     b'"nbytes": 5}]}', b"abc"]]
        for _ in range(300):
            frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(rng.randint(1, 3))]
            messages.append(frames)
        unanswered = 0
        for frames in messages:  # one at a time: answers to a peer outside the session are never queued for it
            socket.send_multipart(frames)
            if not socket.poll(1000 if frames[0].startswith(b'{"type": "ping"') else 10000):
                unanswered += 1
                continue
            header, _ = decode(socket.recv_multipart())
            assert header["type"] == "error", header
        assert unanswered == 1  # the ping with a wrong token: pings are never answered
        # in a session: hostile calls are errors, then a real call is still answered
        socket.send_multipart(encode({"seq": 0, "cmd": "hello"}))
        assert decode(socket.recv_multipart())[0]["type"] == "hello"
        hostile = [encode({"seq": 1, "cmd": "load", "args": {"model": "model.exe"}},
                          vocabulary.pack_files({"model": b"x"})),
                   encode({"seq": 2, "cmd": "load", "args": {}}, vocabulary.pack_files({"../../etc/passwd": b"x"})),
                   encode({"seq": 3, "cmd": "no-such-command"}), encode({"seq": 4, "cmd": "hello"})]
        for frames in hostile:
            socket.send_multipart(frames)
            assert socket.poll(10000)
            header, _ = decode(socket.recv_multipart())
            assert header["type"] == "error", header
        socket.send_multipart(encode({"seq": 5, "cmd": "load", "args": {"model": "m.json"}},
                                     vocabulary.pack_files({"model": Path(model).read_bytes()})))
        assert socket.poll(20000)
        header, _ = decode(socket.recv_multipart())
        assert header["type"] == "reply" and [l["name"] for l in header["result"]["layers"]][0] == "conv_1"
        assert process.poll() is None
    finally:
        context.destroy(linger=0)


def test_side_specs_name_an_endpoint():
    assert side_parts("tensorflow@tcp://gpu-box:5570") == ("tensorflow", "tcp://gpu-box:5570", None, None)
    assert side_parts("torch@tcp://[::1]:5570:port.keras") == ("torch", "tcp://[::1]:5570", "port.keras", None)
    assert side_parts("theano@ipc:///tmp/w.sock:m.json,w.h5") == ("theano", "ipc:///tmp/w.sock", "m.json", "w.h5")
    assert side_parts("tensorflow:port.keras") == ("tensorflow", None, "port.keras", None)
    with pytest.raises(UsageError, match="tcp://HOST:PORT"):
        side_parts("tensorflow@gpu-box")


def test_a_warm_run_killed_mid_session_leaves_its_workers_to_the_next_run(files):
    model, sample = files
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(SOURCE_ROOT)!r})
from kdiff.session import DiffOptions, DiffSession, Side
side = lambda name: Side(name, "fake", {model!r}, python=sys.executable, worker_module={FAKE!r},
                         worker_options={{"model": "conv"}})
session = DiffSession(side("a"), side("b"), DiffOptions(gradients=False, warm=True))
session.start()
os.kill(os.getpid(), signal.SIGKILL)   # no shutdown, no release: the kernel drops the slots' locks
"""
    killed = subprocess.run([sys.executable, "-c", script], env=os.environ, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    pids = sorted(slot["pid"] for slot in warm.slots())
    assert len(pids) == 2
    started = time.monotonic()
    report = run_diff(fake_side("a", model), fake_side("b", model), sample,
                      DiffOptions(derived_tolerances=True, gradients=False, warm=True), Logged())
    assert report.exit_code == 0 and time.monotonic() - started < 15  # not a 20 s lease's wait, nor 'busy'
    assert sorted(slot["pid"] for slot in warm.slots()) == pids
