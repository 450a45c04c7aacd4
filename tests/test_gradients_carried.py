"""Gradients that differ only by what the forward pass carries, told from a backward that computes
otherwise (kdiff.gradient_isolation), on real workers and a real file of Keras 2.3.1 on Theano:
k2_sharp_softmax, a ReLU CNN whose softmax saturates (tests/fixtures/generate_sharp_softmax.py).
After its three kernel flips are fixed, every value matches, but every gradient differs by more
than its whole-model tolerance: the float32 rounding of the convolutions, carried through a
saturated softmax. Each layer's backward alone matches on side A's values: no gradient divergence.
A port whose Dense has a hand-written gradient 1 % off keeps its gradient divergence there."""
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, fixture_dir
from tests.diagnosis_files import kdiff_json

pytestmark = pytest.mark.slow

SHARP = fixture_dir("k2_sharp_softmax")
FILES = (SHARP / "model.json", SHARP / "weights.h5", SHARP / "sample.npy")


# jax: dense_1's backward alone differs from Theano's by more than the layer's own rounding, but within the
# saturated softmax's cancellation (kdiff.gradient_isolation.softmax_cancellation, about 20x here)
@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
def test_after_the_flips_are_fixed_the_gradients_differ_only_by_what_the_values_carry(env_python, tmp_path, backend):
    env_python("theano"), env_python(backend)
    report, result = kdiff_json(tmp_path, *FILES, "--b", backend, gradients=True)
    assert result.returncode == 1
    assert [f["cause"] for f in report["findings"]] == ["conv-kernel-flip"] * 3
    after = report["after_fixes"]
    assert after["all_match"] and after["first_grad_divergence"] is None
    differing = [layer for layer in after["layers"] if not layer["grad_match"]]
    assert differing, "the whole-model gradients differ after the fixes: the case this test is about"
    assert all(layer["grad_carried"] for layer in differing)
    assert "only by what the forward pass carries" in " ".join(result.stdout.split())


def test_a_port_whose_backward_computes_otherwise_keeps_its_gradient_divergence(env_python, tmp_path):
    tensorflow = env_python("tensorflow")
    env_python("theano")
    fixed = tmp_path / "fixed"
    written = subprocess.run([sys.executable, "-m", "kdiff", "fix", *map(str, FILES), "-o", str(fixed)],
                             capture_output=True, text=True, timeout=600)
    assert (fixed / "model.keras").is_file(), written.stdout + written.stderr
    port = tmp_path / "port.keras"
    subprocess.run([tensorflow, str(FIXTURES / "ports" / "make_hand_dense_port.py"), str(fixed / "model.keras"),
                    str(port), "dense_1"], check=True, capture_output=True, timeout=300)
    report, result = kdiff_json(tmp_path, FILES[2], "--a", f"theano:{FILES[0]},{FILES[1]}",
                                "--b", f"tensorflow:{port}", "--custom-objects",
                                FIXTURES / "ports" / "hand_dense.py", gradients=True)
    assert result.returncode == 0  # every value matches
    assert report["first_grad_divergence"] == {"layer": "dense_1", "index": 4}
    dense = report["layers"][4]
    assert dense["weight_grads"]["dense_1/kernel"]["match"] is False
    assert dense["grad_carried"] is False and dense["grad_alone"]["match"] is False
    assert dense["grad_alone"]["weights"]["dense_1/kernel"]["match"] is False
    assert dense["grad_alone"]["inputs"]["match"] is True  # (its gradient with respect to its input is Dense's)
    pooled = report["layers"][3]  # its output gradient differs only by the values it is computed from
    assert pooled["grad"]["match"] is False
    assert pooled["grad_carried"] is True
