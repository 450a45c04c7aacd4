"""The coordinator's side of the protocol and of worker lifecycles, against stand-in workers
(tests/fake_worker.py, tests/rogue_worker.py). The real workers are exercised in
test_real_workers.py."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kdiff.errors import EXIT_WORKER_FAILED, InputError, WorkerFailure
from kdiff.protocol.wire import PROTOCOL_VERSION
from kdiff.workers import Timeouts, WorkerPool
from tests.helpers import wait_until_gone

FAKE = "tests.fake_worker"


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("{}")
    return str(path)


def start(pool, side="a", **options):
    worker = pool.spawn(side, "fake", sys.executable, options, worker_module=FAKE)
    pool.wait_hello(side)
    return worker


def test_hello_carries_protocol_backend_versions_and_pid():
    with WorkerPool() as pool:
        worker = start(pool)
        assert worker.hello["protocol"] == PROTOCOL_VERSION == 3 and worker.hello["backend"] == "fake"
        assert worker.hello["versions"] == {"numpy": np.__version__} and worker.hello["pid"] == worker.process.pid
    assert worker.process.poll() is not None


def test_worker_logs_are_removed_on_close_unless_a_failure_names_them(model_file):
    with WorkerPool() as pool:
        start(pool)
        pool.call("a", "load", {"model": model_file})
    assert not pool.logdir.exists()
    with WorkerPool() as pool:
        worker = start(pool)
        worker.process.kill()
        with pytest.raises(WorkerFailure) as failure:
            pool.call("a", "load", {"model": model_file})
    assert str(worker.log_path) in failure.value.hint and worker.log_path.exists()
    worker.log_path.unlink()
    pool.logdir.rmdir()


def test_load_then_forward_streams_one_part_per_layer(model_file):
    with WorkerPool() as pool:
        start(pool)
        result, _ = pool.call("a", "load", {"model": model_file})
        assert [layer["name"] for layer in result["layers"]] == ["dense_1", "relu_1", "dense_2"]
        seq = pool.send("a", "forward", arrays={"0": np.ones((2, 4), np.float32)})
        parts = []
        while True:
            _, header, arrays = pool.receive_any({"a": seq}, time.monotonic() + 10)
            if header["type"] == "reply":
                break
            parts.append((header["layer"], arrays["0"].shape))
        assert parts == [("dense_1", (2, 8)), ("relu_1", (2, 8)), ("dense_2", (2, 3))]


def test_input_errors_from_a_worker_are_bad_input_not_worker_failures(model_file):
    with WorkerPool() as pool:
        start(pool)
        pool.call("a", "load", {"model": model_file})
        with pytest.raises(InputError, match=r"sample has shape \(2, 5\) but input 'x' expects \('batch', 4\)"):
            pool.call("a", "forward", arrays={"0": np.ones((2, 5), np.float32)})
        with pytest.raises(InputError, match="model file not found"):
            pool.call("a", "load", {"model": model_file + ".missing"})


@pytest.mark.parametrize("kind, message", [
    ("not-json", "malformed message.*not JSON"),
    ("object-dtype", "malformed message.*not allowed"),
    ("subarray-dtype", "malformed message.*'\\(-1,\\)f4'.*not allowed"),
    ("size-mismatch", "malformed message.*needs 4000 bytes.*frame has 12"),
    ("too-many-dims", "malformed message.*65 dimensions"),
    ("huge-shape", "malformed message.*larger than any array"),
    ("deep-json", "malformed message.*nests 3002 levels"),
    ("huge-header", "malformed message.*exceeds"),
    ("huge-frame", "malformed message.*needs 16 bytes.*frame has 67108864"),
    ("error-string", "malformed message.*'error' must be dict"),
    ("result-list", "malformed message.*'result' must be dict"),
    ("seq-string", "malformed message.*'seq' must be int or null"),
    ("wrong-seq", "answered a 'reply' for call [0-9]+, which kdiff never made"),
    ("unknown-type", "unknown message type 'surprise'"),
])
def test_garbage_answers_are_worker_failures_naming_side_and_command(kind, message, model_file):
    with WorkerPool() as pool:
        worker = pool.spawn("b", "rogue", sys.executable, {"garbage": kind}, entry="tests.rogue_worker")
        pool.wait_hello("b")
        with pytest.raises(WorkerFailure, match=message) as failure:
            pool.call("b", "load", {"model": model_file})
        assert failure.value.exit_code == EXIT_WORKER_FAILED
        assert "worker b (rogue) failed during 'load'" in failure.value.message
    assert wait_until_gone([worker.process.pid], 5) == []


def test_a_worker_that_heartbeats_but_ignores_a_call_is_named_within_seconds(model_file):
    with WorkerPool(Timeouts(silence=3.0)) as pool:
        worker = pool.spawn("b", "rogue", sys.executable, {"garbage": "silence"}, entry="tests.rogue_worker")
        pool.wait_hello("b")
        began = time.monotonic()
        with pytest.raises(WorkerFailure, match="failed during 'load': sent nothing about its call for 3 s "
                                                "although its heartbeat goes on"):
            pool.call("b", "load", {"model": model_file})
        assert time.monotonic() - began < 6 and pool.heartbeats.last_seen.get("b") is not None
    assert wait_until_gone([worker.process.pid], 5) == []


def test_a_long_call_keeps_itself_alive_with_progress(model_file):
    with WorkerPool(Timeouts(silence=2.0)) as pool:
        start(pool, fault="slow:load", seconds="5")
        began = time.monotonic()
        pool.call("a", "load", {"model": model_file})  # 5 s of work, never 2 s without a word
        assert time.monotonic() - began >= 5


def test_a_reply_sent_again_for_an_answered_call_is_a_failure(model_file):
    with WorkerPool() as pool:
        pool.spawn("b", "rogue", sys.executable, {"garbage": "answered-twice"}, entry="tests.rogue_worker")
        pool.wait_hello("b")
        pool.call("b", "load", {"model": model_file})
        with pytest.raises(WorkerFailure, match="failed during 'forward': answered call [0-9]+ again, after its reply"):
            pool.call("b", "forward")


def test_a_worker_dying_in_the_middle_of_a_stream_is_named(model_file):
    with WorkerPool() as pool:
        pool.spawn("b", "rogue", sys.executable, {"garbage": "die-mid-call"}, entry="tests.rogue_worker")
        pool.wait_hello("b")
        seq = pool.send("b", "forward")
        _, part, _ = pool.receive_any({"b": seq}, time.monotonic() + 10)
        assert part["type"] == "part" and part["layer"] == "dense_1"
        with pytest.raises(WorkerFailure, match="failed during 'forward': the worker process exited with status 7"):
            pool.receive_any({"b": seq}, time.monotonic() + 10)


def test_a_worker_of_another_protocol_version_is_refused_at_hello():
    with WorkerPool() as pool:
        worker = pool.spawn("b", "rogue", sys.executable, {"garbage": "old-protocol"}, entry="tests.rogue_worker")
        with pytest.raises(WorkerFailure, match=f"speaks protocol {PROTOCOL_VERSION - 1}, kdiff speaks "
                                                f"{PROTOCOL_VERSION}") as failure:
            pool.wait_hello("b")
        assert "recreate it with 'kdiff env create'" in failure.value.hint
    assert wait_until_gone([worker.process.pid], 5) == []


def test_a_worker_killed_mid_call_fails_within_seconds(model_file):
    with WorkerPool() as pool:
        worker = start(pool, fault="exit:forward")
        pool.call("a", "load", {"model": model_file})
        began = time.monotonic()
        with pytest.raises(WorkerFailure, match="failed during 'forward': the worker process was killed by signal 9"):
            pool.call("a", "forward", arrays={"0": np.ones((2, 4), np.float32)})
        assert time.monotonic() - began < 3
    assert worker.process.poll() is not None


def test_a_hung_worker_is_caught_by_its_missing_heartbeats(model_file):
    with WorkerPool(Timeouts(liveness=2.0)) as pool:
        worker = start(pool, fault="hang:forward")
        pool.call("a", "load", {"model": model_file})
        began = time.monotonic()
        with pytest.raises(WorkerFailure, match="no heartbeat for [0-9]+ s: the worker is stuck"):
            pool.call("a", "forward", arrays={"0": np.ones((2, 4), np.float32)})
        assert time.monotonic() - began < 6
    assert wait_until_gone([worker.process.pid], 5) == []  # a stopped process is killed too


def test_a_call_past_its_deadline_fails(model_file):
    with WorkerPool() as pool:
        start(pool, fault="slow:load", seconds="30")
        with pytest.raises(WorkerFailure, match="no answer before the deadline") as failure:
            pool.call("a", "load", {"model": model_file}, timeout=1.0)
        assert "optimizer=fast_compile" not in failure.value.hint


def test_a_theano_worker_past_its_deadline_is_told_how_theano_compiles_a_deep_model_faster(model_file):
    with WorkerPool() as pool:
        pool.spawn("a", "theano", sys.executable, {"fault": "slow:load", "seconds": "30"}, worker_module=FAKE)
        pool.wait_hello("a")
        with pytest.raises(WorkerFailure, match="no answer before the deadline") as failure:
            pool.call("a", "load", {"model": model_file}, timeout=1.0)
        assert "THEANO_FLAGS=optimizer=fast_compile" in failure.value.hint


COORDINATOR = textwrap.dedent("""
    import signal, sys, time
    from kdiff.workers import WorkerPool
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as kdiff.cli does
    pool = WorkerPool()
    for side in "ab":
        pool.spawn(side, "fake", sys.executable, {}, worker_module="tests.fake_worker")
        pool.wait_hello(side)
    print(" ".join(str(w.process.pid) for w in pool.workers.values()), flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_worker_outlives_its_coordinator(how):
    coordinator = subprocess.Popen([sys.executable, "-c", COORDINATOR], stdout=subprocess.PIPE, text=True,
                                   cwd=os.path.dirname(os.path.dirname(__file__)))
    pids = [int(pid) for pid in coordinator.stdout.readline().split()]
    assert len(pids) == 2 and wait_until_gone(pids, 0.5) == pids
    coordinator.send_signal(how)
    coordinator.wait(timeout=10)
    assert wait_until_gone(pids, 5) == []


def test_a_side_far_ahead_is_not_read_until_the_other_catches_up(model_file):
    """Flow control: side A streams 42 layers at once, side B one every 20 ms. The coordinator
    leaves A unread while one of A's layers waits for its partner (A's worker then waits on its
    send), so it never holds more than one unpaired layer besides the pair being compared (in its
    own thread); without that it would hold most of A."""
    from kdiff.alignment import align_layers
    from kdiff.streams import stream_pairs

    with WorkerPool() as pool:
        start(pool, "a", relus="40")
        start(pool, "b", relus="40", pace="0.02")
        described = {side: pool.call(side, "load", {"model": model_file})[0]["layers"] for side in "ab"}
        pairs = align_layers(described["a"], described["b"])
        received, paired, most_unpaired = {"a": 0, "b": 0}, [], 0

        def on_part(side, header, arrays):
            nonlocal most_unpaired
            received[side] += 1
            most_unpaired = max(most_unpaired, received[side] - len(paired))
            return arrays["0"]

        def on_pair(layer, a_output, b_output):
            paired.append(layer)
            np.testing.assert_array_equal(a_output, b_output)

        stream_pairs(pool, pairs, "forward", {"0": np.ones((2, 4), np.float32)}, 60, on_part, on_pair)
        assert paired == [layer["name"] for layer in described["a"]] and len(paired) == 43
        assert most_unpaired <= 2


def test_the_two_sides_run_on_their_own_halves_of_the_cpus_only_when_asked(monkeypatch):
    from kdiff.workers import cpus_for

    monkeypatch.delenv("KDIFF_SPLIT_CPUS", raising=False)
    assert cpus_for("a") == cpus_for("b") == []
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        pytest.skip("one CPU: nothing to split")
    monkeypatch.setenv("KDIFF_SPLIT_CPUS", "1")
    a, b = cpus_for("a"), cpus_for("b")
    assert a and b and set(a).isdisjoint(b) and sorted(a + b) == available and cpus_for("tensorflow") == []
    with WorkerPool() as pool:
        workers = {side: start(pool, side) for side in "ab"}
        assert {side: sorted(os.sched_getaffinity(w.process.pid)) for side, w in workers.items()} == {"a": a, "b": b}


def test_pairs_are_compared_one_at_a_time_in_order_and_their_errors_reach_the_caller():
    import threading

    from kdiff.streams import PairComparer

    seen, threads, gate = [], set(), threading.Event()

    def on_pair(layer, a, b):
        threads.add(threading.current_thread().name)
        gate.wait(5)
        seen.append((layer, a + b))
        if layer == "bad":
            raise ValueError("cannot compare bad")

    comparer = PairComparer(on_pair)
    comparer.put("first", 1, 2)
    handed = threading.Thread(target=comparer.put, args=("second", 3, 4))
    handed.start()
    handed.join(0.3)
    assert handed.is_alive() and seen == []  # the second waits until the first is compared
    gate.set()
    handed.join(5)
    comparer.put("bad", 0, 0)
    with pytest.raises(ValueError, match="cannot compare bad"):
        comparer.put("after", 0, 0)  # raised at the next hand-over
    comparer.close()
    assert seen == [("first", 3), ("second", 7), ("bad", 0)] and threads == {"kdiff-compare"}


def _environ(pid: int) -> dict[str, str]:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_diffs_workers_share_the_cpus_and_a_users_thread_settings_win(monkeypatch):
    half = str(max(1, len(os.sched_getaffinity(0)) // 2))
    monkeypatch.delenv("KDIFF_SPLIT_CPUS", raising=False)
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with WorkerPool() as pool:
        environ = _environ(start(pool).process.pid)
    assert [environ.get(name) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")] \
        == [half] * 3
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with WorkerPool() as pool:
        environ = _environ(start(pool).process.pid)
    assert environ["OMP_NUM_THREADS"] == "7" and environ["TF_NUM_INTRAOP_THREADS"] == half


def test_workers_talk_over_a_unix_socket_in_the_pools_folder_or_tcp_where_the_path_is_too_long(tmp_path, model_file):
    import zmq

    from kdiff.workers import _bind_local

    with WorkerPool() as pool:
        start(pool)
        endpoint = pool.sockets["a"].getsockopt(zmq.LAST_ENDPOINT).decode()
        assert endpoint.startswith(f"ipc://{pool.logdir}/")
        assert [layer["name"] for layer in pool.call("a", "load", {"model": model_file})[0]["layers"]][0] == "dense_1"
    context = zmq.Context()
    try:
        socket = context.socket(zmq.ROUTER)
        assert _bind_local(socket, tmp_path / ("x" * 120)).startswith("tcp://127.0.0.1:")
        socket.close(0)
    finally:
        context.term()
