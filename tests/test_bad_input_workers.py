"""Bad input that only a framework can see (a layer config that Keras itself refuses, weights that do
not fit): the worker turns the framework's refusal into the user's input error, so kdiff stops with
exit 2, the message and a hint, no traceback and no worker left behind. Real workers, real Keras."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.helpers import wait_until_gone

pytestmark = pytest.mark.slow

K2 = fixture_dir("k2_vgg_channels_first")
K3 = fixture_dir("k3_cnn")


def _unknown_activation(case):
    config = json.loads((K2 / "model.json").read_text())
    config["config"]["layers"][1]["config"]["activation"] = "frobnicate"
    (case / "model.json").write_text(json.dumps(config))
    return [case / "model.json", case / "weights.h5", case / "sample.npy"]


def _kernel_of_another_shape(case):
    with h5py.File(case / "weights.h5", "r+") as handle:
        del handle["conv2d_2"]["conv2d_2/kernel"]
        handle["conv2d_2"].create_dataset("conv2d_2/kernel", data=np.zeros((5, 5, 8, 8), np.float32))
    return [case / "model.json", case / "weights.h5", case / "sample.npy"]


def _keras3_unknown_activation(case):
    with zipfile.ZipFile(K3 / "model.keras") as old, zipfile.ZipFile(case / "model.keras", "w") as new:
        for item in old.namelist():
            data = old.read(item)
            if item == "config.json":
                config = json.loads(data)
                layer = next(l for l in config["config"]["layers"] if "activation" in l["config"])
                layer["config"]["activation"] = "frobnicate"
                data = json.dumps(config).encode()
            new.writestr(item, data)
    return [case / "model.keras", K3 / "sample.npy"]


@pytest.mark.parametrize("change, sides, message", [
    (_unknown_activation, ["--b", "tensorflow"], "frobnicate"),
    (_unknown_activation, ["--a", "tf-keras", "--b", "jax"], "frobnicate"),
    (_kernel_of_another_shape, ["--b", "torch"], "conv2d_2"),
    (_keras3_unknown_activation, ["--a", "tensorflow", "--b", "torch"], "frobnicate"),
], ids=["theano-tensorflow-activation", "tf-keras-jax-activation", "kernel-shape", "keras3-activation"])
def test_a_framework_refusal_is_exit_2_with_a_hint(env_python, tmp_path, change, sides, message):
    for side in ("theano", "tensorflow", "jax", "torch", "tf-keras"):
        env_python(side)
    for name in ("model.json", "weights.h5", "sample.npy"):
        shutil.copy(K2 / name, tmp_path / name)
    files = change(tmp_path)
    kdiff = subprocess.Popen([sys.executable, "-m", "kdiff", *map(str, files), *sides, "--no-grad"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = kdiff.communicate(timeout=300)
    assert kdiff.returncode == 2, out + err
    assert message in err and "hint:" in err and "Traceback" not in out + err
    assert wait_until_gone(workers_of(kdiff.pid), 5) == []


def workers_of(pid: int) -> list[int]:
    """The worker processes a kdiff of this pid started (their command line names it), still running."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"--parent-pid\0{pid}\0".encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
