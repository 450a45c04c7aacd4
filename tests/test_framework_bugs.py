"""Known framework bugs as causes (issue #15 item 3), paired. framework-avgpool-same-padding: Keras 3's
torch backend averages the replicated edge into an uneven 'same' padding of an average pooling; named and
proven on a real file on torch against jax. framework-layernorm-axis: Keras 3's torch backend normalises a
LayerNormalization over adjacent non-trailing axes with torch's kernel, over the trailing axes instead; named and
proven on a real file on torch against jax, silent on tensorflow. framework-bias-add-axis: Keras 3's
TensorFlow backend adds a channels_first conv's bias along the width when the width equals the
filters (any Keras 3 convolution: a depthwise one's in predict too, --no-grad); named and proven (the bias added apart matches) on a real Keras 3 file run on TensorFlow
against JAX; silent where the width differs, and for releases or backends outside its range (fast)."""
import numpy as np
import pytest

from kdiff.diagnosis.model import LayerEvidence
from kdiff.diagnosis.rules import framework_bias_add, framework_layernorm_axis
from tests.conftest import FIXTURES
from tests.diagnosis_files import causes, kdiff_json

PORTS = FIXTURES / "ports"


def evidence(width=8, backend="tensorflow", keras="3.15.1", data_format="channels_first", use_bias=True,
             class_name="Conv2D", kernel_shape=(3, 3, 3, 8), channels=8):
    kernel = np.zeros(kernel_shape, np.float32)
    weights = (("conv/kernel", kernel),) + ((("conv/bias", np.zeros(channels, np.float32)),) if use_bias else ())
    return LayerEvidence(layer="conv", b_layer="conv", class_name=class_name, a_inputs=(np.zeros((2, 3, 6, width)),),
                         a_outputs=(np.zeros((2, channels, 6, width)),), b_weights=weights, a_weights=(),
                         b_config={"name": "conv", "filters": 8, "data_format": data_format, "use_bias": use_bias},
                         b_backend=backend, b_versions={"keras": keras, "tensorflow": "2.21.0"})


def test_the_candidate_is_proposed_only_where_the_bug_can_be():
    assert [c.overrides for c in framework_bias_add.candidates(evidence())] == [{framework_bias_add.BIAS_APART: True}]
    for quiet in (evidence(width=7), evidence(backend="jax"), evidence(keras="2.15.0"), evidence(keras="3.16.0"),
                  evidence(data_format="channels_last"), evidence(use_bias=False), evidence(keras="nightly")):
        assert list(framework_bias_add.candidates(quiet)) == []


def test_every_keras_3_convolution_adds_its_bias_so_a_depthwise_one_by_channels_times_multiplier():
    # (found on Keras 3.15.1: Conv1D/3D, the transposed, depthwise and separable convs, eager and in predict)
    depthwise = dict(class_name="DepthwiseConv2D", kernel_shape=(3, 3, 4, 2), channels=8)
    assert [c.overrides for c in framework_bias_add.candidates(evidence(width=8, **depthwise))] == [
        {framework_bias_add.BIAS_APART: True}]
    assert list(framework_bias_add.candidates(evidence(width=4, **depthwise))) == []  # the width is its channels only
    for class_name in ("Conv1DTranspose", "Conv3D", "SeparableConv2D"):
        assert list(framework_bias_add.candidates(evidence(class_name=class_name)))


@pytest.mark.slow
def test_the_bias_added_along_the_width_is_named_as_tensorflows_bug_and_proven(env_python, tmp_path):
    for env in ("tensorflow", "jax"):
        env_python(env)
    model = PORTS / "conv_nchw_w8.keras"
    # (with gradients: the eager pass; the compiled forward of --no-grad traces the width as unknown and is right)
    report, result = kdiff_json(tmp_path, "--a", f"jax:{model}", "--b", f"tensorflow:{model}", PORTS / "xw8.npy",
                                gradients=True)
    assert result.returncode == 1 and causes(report) == [("framework-bias-add-axis", "conv")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_abs"] < 1e-5 < 1 < finding["before"]["max_abs"]
    assert "Keras 3.15.1's TensorFlow backend" in finding["fix"] and "class Conv2DBiasApart" in finding["code"]
    assert report["after_fixes"]["all_match"] is True


@pytest.mark.slow
def test_a_depthwise_conv_gets_the_same_bug_in_predict_too_and_it_is_named_and_proven(env_python, tmp_path):
    for env in ("tensorflow", "jax"):
        env_python(env)
    model = PORTS / "dwconv_nchw_w8.keras"  # 4 channels x multiplier 2 = 8 = the width
    report, result = kdiff_json(tmp_path, "--a", f"jax:{model}", "--b", f"tensorflow:{model}", PORTS / "xdw8.npy")
    assert result.returncode == 1 and causes(report) == [("framework-bias-add-axis", "dw")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_abs"] < 1e-5 < 0.1 < finding["before"]["max_abs"]
    assert "class DepthwiseConv2DBiasApart" in finding["code"]
    assert report["after_fixes"]["all_match"] is True


@pytest.mark.slow
def test_silent_where_the_width_differs_from_the_filters(env_python, tmp_path):
    # (without TensorFlow on a side the rule proposes nothing: the fast case above)
    for env in ("jax", "tensorflow"):
        env_python(env)
    model = PORTS / "conv_nchw_w7.keras"
    report, result = kdiff_json(tmp_path, "--a", f"jax:{model}", "--b", f"tensorflow:{model}", PORTS / "xw7.npy",
                                gradients=True)
    assert result.returncode == 0 and report["findings"] == []


@pytest.mark.slow
def test_torchs_average_pooling_over_an_uneven_same_padding_is_named_and_proven(env_python, tmp_path):
    for env in ("torch", "jax"):
        env_python(env)
    model = PORTS / "avgpool_same.keras"  # pool 3, stride 2 over 6: 0 cells of padding before, 1 after
    assert_torchs_bug_named_proven_and_silent_on_tensorflow(
        tmp_path, model, "x6.npy", ("framework-avgpool-same-padding", "pool"), "class AveragePooling2DExact",
        before_above=0.01)


def assert_torchs_bug_named_proven_and_silent_on_tensorflow(tmp_path, model, sample: str, cause: tuple, code_has: str,
                                                            before_above: float):
    """The model on torch against jax: the bug named at its layer, proven, every layer's outputs and gradients
    matching with the fix; the same model on tensorflow: nothing to name."""
    report, result = kdiff_json(tmp_path, "--a", f"jax:{model}", "--b", f"torch:{model}", PORTS / sample,
                                gradients=True)
    assert result.returncode == 1 and causes(report) == [cause]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_abs"] < 1e-5 < before_above < finding["before"]["max_abs"]
    assert "Keras 3.15.1's torch backend" in finding["fix"] and code_has in finding["code"]
    assert report["after_fixes"]["all_match"] is True and report["after_fixes"]["first_grad_divergence"] is None
    # silent where side B computes it right: the same model on tensorflow
    report, result = kdiff_json(tmp_path, "--a", f"jax:{model}", "--b", f"tensorflow:{model}", PORTS / sample)
    assert result.returncode == 0 and report["findings"] == []


def layernorm_evidence(axis=1, shape=(2, 8, 8), backend="torch", keras="3.15.1"):
    return LayerEvidence(layer="norm", b_layer="norm", class_name="LayerNormalization", a_inputs=(np.zeros(shape),),
                         a_outputs=(np.zeros(shape),), b_weights=(), a_weights=(),
                         b_config={"name": "norm", "axis": axis, "epsilon": 1e-3},
                         b_backend=backend, b_versions={"keras": keras, "torch": "2.9.1"})


def test_the_layernorm_candidate_is_proposed_only_for_adjacent_non_trailing_axes_on_torch():
    for loud in (layernorm_evidence(), layernorm_evidence(axis=[1, 2], shape=(2, 4, 4, 4)),
                 layernorm_evidence(axis=-3, shape=(2, 8, 8, 8))):
        assert [c.overrides for c in framework_layernorm_axis.candidates(loud)] == \
            [{framework_layernorm_axis.NORMALIZED_APART: True}]
    for quiet in (layernorm_evidence(axis=-1), layernorm_evidence(axis=2), layernorm_evidence(axis=[1, 2]),
                  layernorm_evidence(axis=[1, 3], shape=(2, 4, 4, 4)), layernorm_evidence(backend="jax"),
                  layernorm_evidence(keras="3.16.0")):
        assert list(framework_layernorm_axis.candidates(quiet)) == []


@pytest.mark.slow
def test_torchs_layer_normalization_over_a_non_trailing_axis_is_named_and_proven(env_python, tmp_path):
    for env in ("torch", "jax", "tensorflow"):
        env_python(env)
    model = PORTS / "layernorm_axis1.keras"  # axis=1 of (batch, 8, 8): torch normalises over the last axis
    assert_torchs_bug_named_proven_and_silent_on_tensorflow(
        tmp_path, model, "xln.npy", ("framework-layernorm-axis", "norm"), "ops.moments", before_above=0.1)
