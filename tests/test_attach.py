"""Attaching to a real Keras 3 training job in its own process (TensorFlow backend, and ``fit`` on
JAX and PyTorch): the snapshot holds the state of the step it was taken at and is replayed against
another backend, and the job ends with bit-identical weights whatever the coordinator did:
attached, refused for a wrong key, or killed mid-snapshot."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdiff.attach.client import ProbeClient
from kdiff.attach.snapshot import check_snapshot
from kdiff.protocol.keys import make_keys
from tests.helpers import wait_until_gone

pytestmark = pytest.mark.slow

JOB = Path(__file__).parent / "attach_job.py"
ROOT = JOB.parent.parent   # the job imports this kdiff whatever checkout its environment's .pth names now
STEPS = 300


class Job:
    """The training job running in the tensorflow environment; stopped by the test in any case."""

    def __init__(self, python: str, out: Path, *args: str, backend: str = "tensorflow"):
        self.out = out
        self.process = subprocess.Popen([python, str(JOB), str(out), "--steps", str(STEPS), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)})
        line = self.process.stdout.readline().split() if "--endpoint" in args else ["", ""]
        self.endpoint = line[1] if len(line) == 2 else None

    def finish(self, timeout: float = 180) -> dict[str, np.ndarray]:
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0 and out.strip().endswith("done"), err[-3000:]
        with np.load(self.out) as stored:
            found = {key: stored[key] for key in stored.files}
        loss = Path(str(self.out) + ".loss")
        return {**found, "keras_loss": np.float64(float(loss.read_text()))} if loss.exists() else found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def job(env_python, tmp_path):
    started = []

    def start(*args: str, backend: str = "tensorflow") -> Job:
        started.append(Job(env_python(backend), tmp_path / f"weights-{len(started)}.npz", *args, backend=backend))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def unattached(env_python, tmp_path_factory):
    """Final weights and optimizer state of jobs no one attached to, by training style."""
    cache = {}

    def weights(*style: str, backend: str = "tensorflow") -> dict[str, np.ndarray]:
        if (backend, style) not in cache:
            job = Job(env_python(backend), tmp_path_factory.mktemp("plain") / "weights.npz", *style, "--pace", "0",
                      backend=backend)
            try:
                cache[(backend, style)] = job.finish()
            finally:
                job.stop()
        return cache[(backend, style)]

    return weights


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if a[key].dtype != b[key].dtype or not np.array_equal(a[key], b[key])]
    assert different == [], f"{len(different)} of {len(a)} arrays differ"


def kdiff(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdiff", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("style", [(), ("--fit",)], ids=["own-loop", "fit"])
def test_snapshot_replayed_against_jax_and_the_job_ends_bit_identical(env_python, job, unattached, style):
    env_python("jax")
    running = job("--endpoint", "tcp://127.0.0.1:*", *style)
    result = kdiff("attach", running.endpoint, "--against", "jax", "--json", "-")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert 0 < report["step"] < STEPS
    assert report["backends"]["a"]["name"] == "live tensorflow" and report["backends"]["b"]["name"] == "jax"
    assert [layer["name"] for layer in report["layers"]] == ["conv", "dropout", "flatten", "dense"]
    assert all(layer["status"] == "match" and layer["grad"]["match"] for layer in report["layers"])
    assert set(report["layers"][0]["weight_grads"]) == {"attach_job/conv/kernel", "attach_job/conv/bias"}
    assert report["live"][0]["loss"] > 0
    assert "loss" in result.stderr  # the live view showed the run's losses
    assert_bit_identical(running.finish(), unattached(*style))


def test_float64_reference_of_the_same_backend(job):
    running = job("--endpoint", "tcp://127.0.0.1:*")
    result = kdiff("attach", running.endpoint, "--against", "tensorflow:float64", "--json", "-", "--no-diagnose")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    dense = report["layers"][-1]
    assert 0 < dense["max_rel"] < 1e-5   # float32 against float64: rounding, and nothing else
    running.stop()


def test_an_attach_with_a_wrong_key_is_refused_and_the_job_is_unaffected(job, unattached, tmp_path):
    make_keys(str(tmp_path / "job-keys"))
    make_keys(str(tmp_path / "other-keys"))
    running = job("--endpoint", "tcp://127.0.0.1:*", "--keys", str(tmp_path / "job-keys"))
    started = time.monotonic()
    result = kdiff("attach", running.endpoint, "--keys", str(tmp_path / "other-keys"))
    assert result.returncode == 3 and "no answer from the probe" in result.stderr
    assert time.monotonic() - started < 60
    assert_bit_identical(running.finish(), unattached())


def test_a_coordinator_killed_mid_snapshot_leaves_the_job_running_normally(job, unattached):
    running = job("--endpoint", "tcp://127.0.0.1:*", "--pace", "0.02")
    coordinator = subprocess.Popen([sys.executable, "-m", "kdiff", "attach", running.endpoint],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in coordinator.stderr:   # killed once the run's first losses come: the snapshot is on its way
            if line.startswith("step"):
                break
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=10)
    finally:
        coordinator.kill()
        coordinator.wait()
    assert_bit_identical(running.finish(timeout=120), unattached())
    assert wait_until_gone([coordinator.pid], 5) == []


def snapshot_state(snapshot) -> list[np.ndarray]:
    """The snapshot's weights (model.weights order for these models: layer by layer) and optimizer slots."""
    weights = [value for index in range(len(snapshot.layers)) for _, value in snapshot.weights(index)]
    return weights + [snapshot.arrays[f"s{k}"] for k in range(len(snapshot.header["optimizer_slots"]))]


def take_snapshot(endpoint: str, at_step: int, backend: str):
    client = ProbeClient(endpoint)
    try:
        assert client.hello(60)["backend"] == backend
        client.request("snapshot", at_step=at_step)
        snapshot = check_snapshot(*client.receive({"snapshot"}, time.monotonic() + 120))
    finally:
        client.close()
    assert snapshot.step == at_step and snapshot.backend == backend
    return snapshot


def assert_snapshot_is_the_state_of_its_step(snapshot, trained_up_to_the_step: dict) -> None:
    """Weights and optimizer slots bit-identical to a job trained on the steps before it, and the loss
    Keras itself computes on the step's batch with them (float rounding apart: another compiled graph)."""
    expected = [trained_up_to_the_step[f"arr_{i}"] for i in range(len(trained_up_to_the_step) - 1)]
    state = snapshot_state(snapshot)
    assert len(state) == len(expected) and all(a.dtype == b.dtype and np.array_equal(a, b)
                                               for a, b in zip(state, expected))
    assert snapshot.loss == pytest.approx(float(trained_up_to_the_step["keras_loss"]), rel=1e-5)


AT_STEP = 60


@pytest.mark.parametrize("backend, against", [("jax", "tensorflow"), ("torch", "torch")])
def test_keras_probe_inside_fit_sees_the_current_step_and_the_job_ends_bit_identical(env_python, job, unattached,
                                                                                     backend, against):
    """On JAX, fit keeps the state outside the model's variables during an epoch: the snapshot must still
    hold the weights and optimizer slots the step starts from, i.e. those of a job trained up to that step."""
    env_python(against)
    running = job("--endpoint", "tcp://127.0.0.1:*", "--fit", "--pace", "0.02", backend=backend)
    snapshot = take_snapshot(running.endpoint, AT_STEP, backend)
    result = kdiff("attach", running.endpoint, "--against", against, "--json", "-", "--no-diagnose")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["step"] > AT_STEP
    assert all(layer["status"] == "match" and layer["grad"]["match"] for layer in report["layers"])
    assert_bit_identical(running.finish(), unattached("--fit", backend=backend))
    assert_snapshot_is_the_state_of_its_step(snapshot, unattached("--fit", "--train-steps", str(AT_STEP),
                                                                  backend=backend))


@pytest.mark.parametrize("style", [("--two-io",), ("--two-io", "--fit")], ids=["own-loop", "fit"])
def test_a_model_with_two_inputs_and_two_outputs(env_python, job, unattached, style):
    env_python("jax")
    running = job("--endpoint", "tcp://127.0.0.1:*", "--pace", "0.02", *style)
    snapshot = take_snapshot(running.endpoint, AT_STEP, "tensorflow")
    assert [x.shape for x in snapshot.inputs] == [(16, 8, 8, 1), (16, 4)]
    assert [p.shape for p in snapshot.output_grads] == [(16, 10), (16, 1)]
    result = kdiff("attach", running.endpoint, "--against", "jax", "--json", "-")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    names = [layer["name"] for layer in report["layers"]]
    assert {"conv", "embed", "joined", "label", "value"} <= set(names)
    assert all(layer["status"] == "match" and layer["grad"]["match"] for layer in report["layers"])
    assert set(report["layers"][names.index("embed")]["weight_grads"]) == {"embed/kernel", "embed/bias"}
    assert report["sample"]["shape"] == [[16, 8, 8, 1], [16, 4]]
    assert_bit_identical(running.finish(), unattached(*style))
    assert_snapshot_is_the_state_of_its_step(snapshot, unattached(*style, "--train-steps", str(AT_STEP)))


def test_a_divergence_in_a_snapshot_of_a_model_with_two_inputs_is_diagnosed(env_python, job):
    """The same against a float64 reference, on a model with two inputs and two outputs: the diagnosis
    runs on both inputs and proves the first divergence's cause."""
    running = job("--endpoint", "tcp://127.0.0.1:*", "--two-io")
    result = kdiff("attach", running.endpoint, "--against", "tensorflow:float64", "--atol", "0", "--rtol", "0",
                   "--json", "-")
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    first = report["first_divergence"]["layer"]
    assert report["findings"] and report["findings"][0]["cause"] == "float-precision"
    assert (report["findings"][0]["layer"], report["findings"][0]["verified"]) == (first, True)
    assert not any("diagnosis does not run" in note for note in report["notes"])
    running.stop()


def test_a_divergence_in_a_snapshot_is_diagnosed_like_the_offline_command(job):
    """Against a float64 reference with no tolerance at all, every difference is float32 rounding: the
    diagnosis must name it (it reads the snapshot side's layer configs and outputs) and prove it."""
    running = job("--endpoint", "tcp://127.0.0.1:*")
    result = kdiff("attach", running.endpoint, "--against", "tensorflow:float64", "--atol", "0", "--rtol", "0",
                   "--json", "-")
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["first_divergence"]["layer"] == "conv"
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]][:1] == [("float-precision", "conv", True)]
    running.stop()


def _attack(endpoint: str, keys_dir: str | None, seed: int, seconds: float = 6.0) -> dict:
    """Hostile messages at the probe of a running job, from a client with the job's keys (when it has
    keys) and, every few messages, a reconnecting client after an oversized one: what came back."""
    import random

    import zmq

    from kdiff.protocol.keys import ClientKeys
    from kdiff.protocol.wire import ProtocolError, decode
    from tests.hostile_messages import hostile_message

    rng = random.Random(seed)
    context = zmq.Context()
    keys = ClientKeys.load(keys_dir) if keys_dir else None
    answers = {"error": 0, "other": 0, "sent": 0}

    def client():
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys.configure_client(socket)
        socket.connect(endpoint)
        return socket

    socket = client()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            frames = hostile_message(rng)
            if not frames or not all(isinstance(f, (bytes, bytearray, memoryview)) for f in frames):
                continue
            if rng.random() < 0.02:  # larger than the probe takes: it drops this peer, which comes back
                frames = [b"{" + b" " * (70 * 1024) + b"}"]
            try:
                socket.send_multipart(frames, flags=zmq.NOBLOCK)
                answers["sent"] += 1
            except zmq.Again:
                socket.close()
                socket = client()
            while socket.poll(0):
                try:
                    header, _ = decode(socket.recv_multipart())
                    answers["error" if header.get("type") == "error" else "other"] += 1
                except ProtocolError:
                    answers["other"] += 1
            if frames[0][:1] == b"{" and len(frames[0]) > 64 * 1024:
                socket.close()
                socket = client()
            time.sleep(0.002)
    finally:
        socket.close()
        context.term()
    return answers


@pytest.mark.parametrize("style, keyed", [((), False), (("--fit",), True)], ids=["own-loop", "fit-with-keys"])
def test_hostile_messages_at_a_live_probe_leave_the_job_running_and_bit_identical(job, unattached, tmp_path,
                                                                                    style, keyed):
    keys = ["--keys", str(tmp_path / "keys")] if keyed else []
    if keyed:
        make_keys(str(tmp_path / "keys"))
    running = job("--endpoint", "tcp://127.0.0.1:*", "--pace", "0.02", *keys, *style)
    answers = _attack(running.endpoint, str(tmp_path / "keys") if keyed else None, seed=len(style))
    assert answers["sent"] > 500 and answers["error"] > 30, answers  # (the probe reads at most 16 a step)
    assert running.process.poll() is None, "the job stopped under attack"
    assert_bit_identical(running.finish(timeout=180), unattached(*style))
