"""Max pooling's gradient at tied maxima (kdiff.tied_maxima), paired: on a right port of a Theano-era
CNN (ReLU into MaxPooling2D) Theano routes the gradient to every tied maximum and TensorFlow to the
first, so two conv layers' output gradients differ while every value matches; kdiff proves that
routing by one rule makes them match, names it, and reports no gradient divergence. Between two
frameworks that route alike nothing fires. Fast: the routing itself."""
import numpy as np
import pytest

from kdiff.tied_maxima import RULES, _route, _tied_windows
from tests.conftest import FIXTURES, fixture_dir
from tests.diagnosis_files import kdiff_json

PORT = FIXTURES / "ports" / "k2_vgg_channels_last_port.keras"


def test_a_tie_gets_the_gradient_everywhere_or_once_and_overlapping_windows_add_up():
    x = np.array([[[[0, 0, 1, 3], [0, 0, 2, 3]]]], np.float32)  # (N, C, H=2, W=4): windows 2x2, stride 2
    g = np.array([[[[1.0, 10.0]]]], np.float32)
    every, first = (_route(x, g, [2, 2], [2, 2], True, rule) for rule in RULES)
    assert every.tolist() == [[[[1, 1, 0, 10], [1, 1, 0, 10]]]] and first.tolist() == [[[[1, 0, 0, 10], [0, 0, 0, 0]]]]
    assert _tied_windows(x, [2, 2], [2, 2], True) == 2
    overlapping = _route(np.array([[[1.0], [2.0], [1.0]]]), np.array([[[1.0], [1.0]]]), [2], [1], False, RULES[1])
    assert overlapping.ravel().tolist() == [0, 2, 0]  # channels last: (N, W=3, C=1), the middle max twice


@pytest.mark.slow
def test_theanos_routing_of_tied_maxima_is_named_and_no_gradient_divergence_is_left(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    folder = fixture_dir("k2_vgg_channels_first")
    report, result = kdiff_json(tmp_path, "--a", f"theano:{folder / 'model.json'},{folder / 'weights.h5'}",
                                "--b", f"tensorflow:{PORT}", folder / "sample.npy", gradients=True)
    assert result.returncode == 0
    tied = [f for f in report["findings"] if f["cause"] == "maxpool-tied-maxima"]
    assert [(f["layer"], f["pooling"], f["routes"]) for f in tied] == [
        (layer, pool, {"a": "every tied maximum", "b": "the first maximum"})
        for layer, pool in (("conv2d_2", "max_pooling2d_1"), ("conv2d_3", "max_pooling2d_2"))]
    assert all(f["verified"] and f["before"]["max_rel"] == 1.0 and f["after"]["max_rel"] < 1e-3 for f in tied)
    assert report["first_grad_divergence"] is None and all(layer["grad"]["match"] for layer in report["layers"])


@pytest.mark.slow
def test_frameworks_that_route_alike_show_no_tied_maxima(env_python, tmp_path):
    for env in ("tensorflow", "jax"):
        env_python(env)
    sample = fixture_dir("k2_vgg_channels_first") / "sample.npy"
    transposed = tmp_path / "sample_nhwc.npy"
    np.save(transposed, np.load(sample).transpose(0, 2, 3, 1))
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{PORT}", "--b", f"jax:{PORT}", transposed,
                                gradients=True)
    assert result.returncode == 0 and report["findings"] == [] and report["first_grad_divergence"] is None
