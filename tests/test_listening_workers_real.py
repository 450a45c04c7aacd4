"""Warm workers and a side on another host with the real frameworks: the bundled example (Keras 2.3.1
on Theano against Keras 3 on TensorFlow) run twice with --warm, and `kdiff fix` against a TensorFlow
worker started with `kdiff worker --listen` behind CURVE keys over the loopback (a wrong key refused)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdiff import warm
from kdiff.protocol.keys import make_keys

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = [str(ROOT / "examples" / "theano_vgg" / name) for name in ("model.json", "weights.h5", "sample.npy")]


def kdiff(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "kdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


def without_backends(path: Path) -> dict:
    report = json.loads(path.read_text())
    report.pop("backends")
    return report


def test_a_second_warm_run_of_the_bundled_example_reuses_both_workers(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    env = {**os.environ, "KDIFF_WARM_DIR": str(tmp_path / "warm")}
    try:
        cold = kdiff(*EXAMPLE, "--warm", "--json", tmp_path / "cold.json", env=env)
        assert cold.returncode == 1, cold.stderr  # three flips found and proven: a divergence, by design
        os.environ["KDIFF_WARM_DIR"] = env["KDIFF_WARM_DIR"]
        pids = sorted(slot["pid"] for slot in warm.slots())
        assert len(pids) == 2
        again = kdiff(*EXAMPLE, "--warm", "--json", tmp_path / "warm.json", env=env)
        assert again.returncode == 1, again.stderr
        assert "warm: theano and tensorflow had this model loaded already" in again.stderr
        assert sorted(slot["pid"] for slot in warm.slots()) == pids
        assert without_backends(tmp_path / "warm.json") == without_backends(tmp_path / "cold.json")
        assert "3 proven fix(es) applied, all 8 layers match" in again.stdout
    finally:
        stopped = kdiff("serve", "--stop", env=env)
        os.environ.pop("KDIFF_WARM_DIR", None)
    assert stopped.returncode == 0 and "stopped 2 warm worker(s)" in stopped.stdout
    assert not [pid for pid in pids if warm.is_listening_worker(pid)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_kdiff_fix_against_a_tensorflow_worker_listening_behind_keys(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    keys, other = tmp_path / "keys", tmp_path / "other"
    make_keys(str(keys))
    make_keys(str(other))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    worker = subprocess.Popen([sys.executable, "-m", "kdiff", "worker", "--listen", endpoint, "--backend",
                               "tensorflow", "--keys", str(keys)], cwd=str(ROOT), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in worker.stderr:
            if "listening on" in line:
                break
        fixed = kdiff("fix", *EXAMPLE, "--b", f"tensorflow@{endpoint}", "--keys", keys, "-o", tmp_path / "fixed",
                      "--json", tmp_path / "fix.json")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        report = json.loads((tmp_path / "fix.json").read_text())
        assert report["written"]["verified"] and report["backends"]["b"]["python"] == f"on {endpoint}"
        assert sorted(p.name for p in (tmp_path / "fixed").iterdir()) == ["model.keras", "model.weights.h5"]
        assert [finding["cause"] for finding in report["findings"]] == ["conv-kernel-flip"] * 3
        refused = kdiff(*EXAMPLE, "--b", f"tensorflow@{endpoint}", "--keys", other, timeout=120)
        assert refused.returncode == 2 and "worker-refused-keys" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert worker.poll() is None  # it goes on serving
    finally:
        os.killpg(worker.pid, signal.SIGINT)
        worker.wait(timeout=30)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"backends.listen .*{endpoint}"], capture_output=True, text=True).stdout
    assert left.strip() == ""
