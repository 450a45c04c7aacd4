"""The 'non-finite-input' cause and the input warnings, paired: where the sample holds NaN the
first divergence is named as the frameworks' handling of NaN and proven (fast tier: synthetic
evidence and stand-in sides; slow tier: a real Keras 2.3.1 file on Theano against TensorFlow), and
with the same model and a clean sample nothing fires."""
import numpy as np
import pytest

from kdiff.diagnosis.model import LayerEvidence
from kdiff.diagnosis.non_finite import prove_non_finite
from kdiff.metrics import Tolerance
from kdiff.model_checks import sample_warnings
from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json


class ReluSide:
    """A stand-in side whose one layer is a ReLU, passing NaN (as Theano's) or not (as TensorFlow's)."""

    def __init__(self, passes_nan: bool):
        self.passes_nan = passes_nan

    def run_layer(self, layer, inputs):
        (x,) = inputs
        return [0.5 * (x + np.abs(x)) if self.passes_nan else np.where(np.isnan(x), 0.0, np.maximum(x, 0.0))]


def _evidence(x):
    outputs = ReluSide(True).run_layer("relu", [x])
    return LayerEvidence(layer="relu", b_layer="relu", class_name="Activation", a_inputs=(x,),
                         a_outputs=tuple(outputs), b_weights=(), a_weights=())


def test_non_finite_input_fires_and_is_proven_where_the_inputs_hold_nan():
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    x[0, 2] = np.nan
    finding = prove_non_finite(ReluSide(True), ReluSide(False), _evidence(x), Tolerance(1e-6, 1e-5))
    assert finding.cause == "non-finite-input" and finding.verified and finding.layer == "relu"
    assert finding.detail == {"non_finite_values": 1} and finding.after.max_abs == 0.0
    assert "nan_to_num" in finding.code


def test_non_finite_input_stays_silent_on_finite_inputs():
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    assert prove_non_finite(ReluSide(True), ReluSide(False), _evidence(x), Tolerance()) is None


def test_sample_warnings_name_nan_and_integer_samples_only():
    x = np.ones((2, 3), np.float32)
    assert sample_warnings(x, integer_input=False) == []
    x[0, 0], x[1, 1] = np.nan, np.inf
    assert sample_warnings(x, False, "s.npy") == ["s.npy holds 1 NaN and 1 Inf value(s) of 6: frameworks propagate "
                                                  "them differently, so layers may differ where they reach"]
    assert "holds int64 values but the model takes floats" in sample_warnings(np.ones(3, np.int64), False)[0]
    assert sample_warnings(np.ones(3, np.int64), integer_input=True) == []
    assert "holds bool values" in sample_warnings(np.ones(3, bool), False)[0]


@pytest.mark.slow
def test_a_nan_in_the_sample_is_named_and_proven_on_theano_against_tensorflow(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    folder = fixture_dir("k2_mlp_relu")
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample_nan.npy")
    assert result.returncode == 1
    assert causes(report) == [("non-finite-input", "dense_1")]
    assert report["findings"][0]["verified"] is True
    assert any("1 NaN and 0 Inf" in warning for warning in report["input_warnings"])
    assert "warning: sample_nan.npy holds 1 NaN" in result.stdout
    clean, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy")
    assert result.returncode == 0 and clean["findings"] == [] and clean["input_warnings"] == []


def test_integer_and_non_finite_weights_are_warnings(tmp_path):
    import shutil

    import h5py

    from kdiff.model_files import inspect_model

    folder = fixture_dir("k2_mlp_relu")
    shutil.copy(folder / "weights.h5", tmp_path / "weights.h5")
    assert inspect_model(str(folder / "model.json"), str(tmp_path / "weights.h5")).warnings == ()
    with h5py.File(tmp_path / "weights.h5", "r+") as handle:
        handle["dense_1"]["dense_1/kernel"][0, 0] = np.nan
        bias = handle["dense_2"]["dense_2/bias"][...]
        del handle["dense_2"]["dense_2/bias"]
        handle["dense_2"].create_dataset("dense_2/bias", data=bias.astype(np.int32))
    warnings = inspect_model(str(folder / "model.json"), str(tmp_path / "weights.h5")).warnings
    assert warnings == ("1 weight array(s) hold integers (dense_2/dense_2/bias): each framework converts them to "
                        "its float type on load",
                        "1 weight array(s) hold NaN or Inf (dense_1/dense_1/kernel): every output they reach is NaN or "
                        "Inf, and frameworks propagate those differently")
