"""Real workers, real failures: kdiff stops with exit 3 naming the side and the command when
a worker dies, and no worker outlives kdiff however kdiff itself ends."""
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import fixture_dir
from tests.helpers import children_of, wait_until_gone

pytestmark = pytest.mark.slow


def start_kdiff(*args):
    folder = fixture_dir("k2_vgg_channels_first")
    command = [sys.executable, "-m", "kdiff", folder / "model.json", folder / "weights.h5", folder / "sample.npy",
               "--a", "theano", "--b", "tensorflow", *args]
    return subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def workers_of(process, count=2, seconds=60.0) -> dict[str, int]:
    """side -> pid of kdiff's worker processes, once all have started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = {}
        for pid in children_of(process.pid):
            try:
                argv = open(f"/proc/{pid}/cmdline").read().split("\0")
            except OSError:
                continue
            if "backends.serve" in argv:
                found[argv[argv.index("--side") + 1]] = pid
        if len(found) == count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"kdiff did not start {count} workers in {seconds} s")


def test_a_real_worker_killed_mid_run_gives_exit_3_within_seconds(env_python):
    env_python("theano"), env_python("tensorflow")
    kdiff = start_kdiff()
    workers = workers_of(kdiff)
    time.sleep(1.0)  # inside start-up: importing TensorFlow
    killed_at = time.monotonic()
    subprocess.run(["kill", "-9", str(workers["b"])], check=True)
    _, err = kdiff.communicate(timeout=30)
    assert kdiff.returncode == 3, err
    assert time.monotonic() - killed_at < 5
    assert "worker b (tensorflow) failed during 'start': the worker process was killed by signal 9" in err
    assert wait_until_gone(workers.values(), 5) == []


@pytest.mark.parametrize("how, code", [(signal.SIGKILL, -9), (signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_no_real_worker_outlives_kdiff(env_python, how, code):
    env_python("theano"), env_python("tensorflow")
    kdiff = start_kdiff()
    workers = workers_of(kdiff)
    time.sleep(0.5)  # the workers are still importing their frameworks: kdiff is certainly mid-run
    kdiff.send_signal(how)
    _, err = kdiff.communicate(timeout=30)
    assert kdiff.returncode == code, err
    assert wait_until_gone(workers.values(), 5) == []
