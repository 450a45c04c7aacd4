"""Masks (issue #13), paired, on real Keras 3 files (tests/fixtures/ports/generate.py): a port whose
Embedding drops mask_zero reads the padding the original's LSTM skips; kdiff finds the divergence at
the LSTM (a mask is no input: its inputs match), names the dropped mask and proves it on the whole
model, and kdiff fix writes the port with the mask; a port that keeps the mask matches in outputs and
gradients."""
import json
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES
from tests.diagnosis_files import causes, kdiff_json

pytestmark = pytest.mark.slow
PORTS = FIXTURES / "ports"


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("tensorflow", "jax"):
        env_python(name)


def test_a_dropped_mask_is_named_proven_and_written(envs, tmp_path):
    out = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "fix", "--a", f"tensorflow:{PORTS / 'lstm_masked.keras'}",
                             "--b", f"jax:{PORTS / 'lstm_unmasked.keras'}", PORTS / "t.npy", "-o", tmp_path / "fixed",
                             "--json", out], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["first_divergence"]["layer"] == "lstm" and causes(report) == [("mask-dropped", "lstm")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["mask_source"] == "emb" and finding["after"]["max_rel"] < 1e-4
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True


def test_a_port_that_keeps_the_mask_matches(envs, tmp_path):
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{PORTS / 'lstm_masked.keras'}",
                                "--b", f"jax:{PORTS / 'lstm_masked.keras'}", PORTS / "t.npy", gradients=True)
    assert result.returncode == 0 and report["findings"] == [] and report["first_grad_divergence"] is None
