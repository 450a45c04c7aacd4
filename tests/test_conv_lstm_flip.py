"""Theano's kernel flip in a ConvLSTM2D, paired, on real files of Keras 2.3.1 on Theano (k2_conv_lstm,
tests/fixtures/generate_conv_lstm.py: 3x3 kernels): both its convolutions, of the input and of the state at
every step, ran through Theano's flipping conv2d, so conv-kernel-flip reverses the kernel and the recurrent
kernel together; proven, and the written model reproduces Theano; with Keras 2's hard_sigmoid
(k2_conv_lstm_hard) the flip and activation-definition are proven together. Silent on ConvLSTM2D with 1x1 kernels
(k2_every_layer_images, tests/test_every_layer.py) and, in the fast tier here, proposes nothing there."""
import numpy as np
import pytest

from kdiff.diagnosis.model import LayerEvidence
from kdiff.diagnosis.rules import conv_kernel_flip
from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, kdiff_json


def evidence(window):
    weights = (("c/kernel", np.arange(window * window * 2 * 12, dtype=np.float32).reshape(window, window, 2, 12)),
               ("c/recurrent_kernel", np.ones((window, window, 3, 12), np.float32)),
               ("c/bias", np.zeros(12, np.float32)))
    return LayerEvidence(layer="c", b_layer="c", class_name="ConvLSTM2D", a_inputs=(), a_outputs=(),
                         b_weights=weights, a_weights=())


def test_both_kernels_flipped_first_then_each_alone_and_nothing_for_a_1x1_window():
    found = list(conv_kernel_flip.candidates(evidence(3)))
    assert len(found) == 3
    kernel = evidence(3).b_weights[0][1]
    assert np.array_equal(found[0].b_weights[0], kernel[::-1, ::-1]) and "recurrent kernel" in found[0].fix
    assert np.array_equal(found[2].b_weights[0], kernel) and np.array_equal(found[1].b_weights[0], kernel[::-1, ::-1])
    assert list(conv_kernel_flip.candidates(evidence(1))) == []


@pytest.mark.slow
def test_a_theano_conv_lstm_gets_both_kernels_flipped_proven_and_written(env_python, tmp_path):
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("k2_conv_lstm")
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--write-fixed", tmp_path / "fixed")
    assert result.returncode == 1 and causes(report) == [("conv-kernel-flip", "conv_lst_m2d_1")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_abs"] < 1e-5 < 0.1 < finding["before"]["max_abs"]
    assert "the kernel and the recurrent kernel" in finding["fix"]
    assert report["after_fixes"]["all_match"] is True and report["written"]["verified"] is True


@pytest.mark.slow
def test_with_keras_2s_hard_sigmoid_the_flip_and_the_activation_are_proven_together(env_python, tmp_path):
    # (Keras 2.3.1's ConvLSTM2D default, as in its own examples/conv_lstm.py: the corpus entry ex_conv_lstm)
    env_python("theano"), env_python("tensorflow")
    folder = fixture_dir("k2_conv_lstm_hard")
    report, result = kdiff_json(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                                "--write-fixed", tmp_path / "fixed", gradients=True)
    assert result.returncode == 1
    assert sorted(causes(report)) == [("activation-definition", "conv_lst_m2d_1"), ("conv-kernel-flip", "conv_lst_m2d_1")]
    assert all(sorted(f["proven_together_with"]) == ["activation-definition", "conv-kernel-flip"]
               for f in report["findings"])
    assert report["after_fixes"]["all_match"] is True and report["written"]["verified"] is True
    # the fix holds side A's kernels flipped and their i, f, o columns times 1.2: their gradients are compared
    # through that map (kdiff.element_maps.find_scaled_map), and match
    assert report["after_fixes"]["first_grad_divergence"] is None
    assert all(layer["grad_match"] for layer in report["after_fixes"]["layers"])
