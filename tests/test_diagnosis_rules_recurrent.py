"""Diagnosis of a GRU rebuilt with the other `reset_after` (rnn-reset-after), paired: ports of the
real Keras 2.3.1 file k2_lstm (its GRU has reset_after=False) to a GRU with reset_after=True where
the rule must fire, in both directions, and cases where it must stay silent: the matching pair, a
divergence of another cause on the same GRU, and a conversion that the re-run cannot prove.
Real workers throughout."""
import json
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json, keras_layer_config, legacy_layer

pytestmark = pytest.mark.slow

GRU_BIAS = "gru_1/gru_1/bias"   # in k2_lstm/weights.h5: (24,) = 3 gates (z, r, h) x 8 units


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("tensorflow", "jax"):
        env_python(name)


def reset_after_port(tmp_path, recurrent_row) -> tuple:
    """k2_lstm as a legitimate Keras 2 file whose gru_1 has reset_after=True, its bias (2, 24): the
    original bias minus `recurrent_row(bias)` as the input row, that as the recurrent row."""
    folder = fixture_dir("k2_lstm")
    model = json.loads((folder / "model.json").read_text())
    legacy_layer(model, "gru_1")["config"]["reset_after"] = True
    port_json, port_h5 = tmp_path / "port.json", tmp_path / "port_weights.h5"
    port_json.write_text(json.dumps(model))
    shutil.copy(folder / "weights.h5", port_h5)
    with h5py.File(port_h5, "r+") as handle:
        bias = handle[GRU_BIAS][...]
        assert bias.shape == (24,) and np.abs(bias[16:]).max() > 1e-2  # the h bias matters
        recurrent = recurrent_row(bias).astype(bias.dtype)
        del handle[GRU_BIAS]
        handle[GRU_BIAS] = np.stack([bias - recurrent, recurrent])
    return port_json, port_h5


def original(folder=None) -> str:
    folder = folder or fixture_dir("k2_lstm")
    return f"{folder / 'model.json'},{folder / 'weights.h5'}"


def z_r_split(bias):
    """Half of the z and r biases in the recurrent row, none of h (summing the rows is then exact)."""
    return np.concatenate([bias[:16] / 2, np.zeros(8)])


def assert_reset_after_proven(report, before_rel=1e-1):
    assert causes(report) == [("rnn-reset-after", "gru_1")]
    finding = report["findings"][0]
    assert finding["verified"] is True and finding["fix"] and finding["code"]
    assert finding["before"]["max_rel"] > before_rel      # diverges without the fix
    assert finding["after"]["max_abs"] < 1e-5 and finding["after"]["max_rel"] < 1e-4
    assert finding["explains"] == ["gru_1", "dense_1"]
    assert report["after_fixes"]["all_match"] is True
    return finding


# ---- must fire ---------------------------------------------------------------------------------
def test_rnn_reset_after_fires_on_a_port_to_reset_after_true(envs, tmp_path):
    port_json, port_h5 = reset_after_port(tmp_path, z_r_split)
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{original()}", "--b", f"jax:{port_json},{port_h5}",
                                fixture_dir("k2_lstm") / "sample.npy")
    assert result.returncode == 1  # the comparison itself diverges at gru_1
    assert [layer["status"] for layer in report["layers"]][2] == "diverged"
    finding = assert_reset_after_proven(report)
    assert "reset_after=False (it has True)" in finding["fix"]
    assert "bias.sum(axis=0)" in finding["code"] and "'reset_after': False" in finding["code"]


def test_rnn_reset_after_fires_the_other_way_and_the_written_model_carries_it(envs, tmp_path):
    port_json, port_h5 = reset_after_port(tmp_path, np.zeros_like)  # the copied bias, a zero recurrent row
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{port_json},{port_h5}", "--b", f"jax:{original()}",
                           fixture_dir("k2_lstm") / "sample.npy", "--write-fixed", tmp_path / "fixed")
    finding = assert_reset_after_proven(report)
    assert "reset_after=True (it has False)" in finding["fix"]
    assert "np.stack([bias, np.zeros_like(bias)])" in finding["code"]
    assert report["written"]["verified"] is True
    with zipfile.ZipFile(tmp_path / "fixed" / "model.keras") as written:
        assert keras_layer_config(json.loads(written.read("config.json")), "gru_1")["reset_after"] is True
    with h5py.File(tmp_path / "fixed" / "model.weights.h5", "r") as written:
        assert written["layers/gru/cell/vars/2"].shape == (2, 24)  # kernel, recurrent kernel, bias


# ---- must stay silent --------------------------------------------------------------------------
def test_rnn_reset_after_stays_silent_on_the_matching_pair(envs, tmp_path):
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{original()}", "--b", f"jax:{original()}",
                                fixture_dir("k2_lstm") / "sample.npy")
    assert result.returncode == 0 and report["findings"] == []


def test_rnn_reset_after_stays_silent_on_gru_gate_blocks_in_another_order(envs, tmp_path):
    folder = fixture_dir("k2_lstm")
    port_h5 = tmp_path / "port_weights.h5"
    shutil.copy(folder / "weights.h5", port_h5)
    with h5py.File(port_h5, "r+") as handle:  # blocks (z, r, h) stored as (r, z, h)
        for name in ("kernel", "recurrent_kernel", "bias"):
            dataset = handle[f"gru_1/gru_1/{name}"]
            z, r, h = np.split(dataset[...], 3, axis=-1)
            dataset[...] = np.concatenate([r, z, h], axis=-1)
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{original()}", "--b", f"jax:{folder / 'model.json'},{port_h5}",
                           folder / "sample.npy")
    assert causes(report) == [("rnn-gate-order", "gru_1")]
    assert report["findings"][0]["before"]["max_rel"] > 1e-2


def test_rnn_reset_after_claims_no_conversion_the_rerun_cannot_prove(envs, tmp_path):
    # side A: reset_after=True with a recurrent h bias, which no bias of a reset_after=False GRU
    # reproduces; side B: the same weights with the rows summed and reset_after=False
    rows = np.random.RandomState(0).uniform(-0.2, 0.2, 24)
    port_json, port_h5 = reset_after_port(tmp_path, lambda bias: rows)
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{port_json},{port_h5}", "--b", f"jax:{original()}",
                                fixture_dir("k2_lstm") / "sample.npy")
    assert result.returncode == 1 and report["findings"] == []
    assert report["unexplained"]["layer"] == "gru_1" and report["unexplained"]["isolated"]["max_rel"] > 1e-2
