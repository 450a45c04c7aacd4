"""Attaching to a real Keras 3 training job (TensorFlow backend) in its own process: the
snapshot is replayed against another backend, and the job ends with bit-identical weights
whatever the coordinator did: attached, refused for a wrong key, or killed mid-snapshot."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdiff.probe.keys import make_keys
from tests.helpers import wait_until_gone

pytestmark = pytest.mark.slow

JOB = Path(__file__).parent / "attach_job.py"
STEPS = 300


class Job:
    """The training job running in the tensorflow environment; stopped by the test in any case."""

    def __init__(self, python: str, out: Path, *args: str):
        self.out = out
        self.process = subprocess.Popen([python, str(JOB), str(out), "--steps", str(STEPS), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().split() if "--endpoint" in args else ["", ""]
        self.endpoint = line[1] if len(line) == 2 else None

    def finish(self, timeout: float = 180) -> dict[str, np.ndarray]:
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0 and out.strip().endswith("done"), err[-3000:]
        with np.load(self.out) as stored:
            return {key: stored[key] for key in stored.files}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def job(env_python, tmp_path):
    started = []

    def start(*args: str) -> Job:
        started.append(Job(env_python("tensorflow"), tmp_path / f"weights-{len(started)}.npz", *args))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def unattached(env_python, tmp_path_factory):
    """Final weights and optimizer state of jobs no one attached to, by training style."""
    cache = {}

    def weights(*style: str) -> dict[str, np.ndarray]:
        if style not in cache:
            job = Job(env_python("tensorflow"), tmp_path_factory.mktemp("plain") / "weights.npz", *style, "--pace", "0")
            try:
                cache[style] = job.finish()
            finally:
                job.stop()
        return cache[style]

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
