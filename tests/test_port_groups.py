"""Ports whose layer lists differ (issue #15), real Keras 3 files (tests/fixtures/ports/generate.py):
a padding moved into a ZeroPadding2D before a 'valid' conv is compared and isolated as one group with
the other side's 'same' conv; off by TensorFlow's (0, 1) at stride 2 it is named (padding-same-asymmetry
on the padding layer), proven and written; split the right way it matches, as does a Dense whose
activation and an extra Dropout are layers of their own, on either side. A BatchNormalization folded into
the conv before it: folded with PyTorch's epsilon it is named (batchnorm-folded-epsilon), proven and
written; folded right it matches, its weight gradients compared through the fold's per-channel scale. The same
on the branches of a residual block (tests/fixtures/ports/generate_residual.py). A Masking layer on one side
only is named (mask-dropped), proven and written (tests/fixtures/ports/generate_masking.py)."""
import json

import pytest

from tests.conftest import FIXTURES
from tests.diagnosis_files import causes, kdiff_json

pytestmark = pytest.mark.slow
PORTS = FIXTURES / "ports"


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("tensorflow", "jax", "torch"):
        env_python(name)


def side(backend, name):
    return f"{backend}:{PORTS / name}.keras"


def kdiff_fix(tmp_path, a: str, b: str, sample: str):
    """`kdiff fix --a A --b B SAMPLE -o DIR --json R`, expected to exit 0: the report and the process."""
    import subprocess
    import sys

    out = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "fix", "--a", a, "--b", b, PORTS / f"{sample}.npy",
                             "-o", tmp_path / "fixed", "--json", out], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result


def test_a_padding_moved_into_its_own_layer_is_named_proven_and_written(envs, tmp_path):
    report, result = kdiff_fix(tmp_path, side("tensorflow", "conv_same"), side("torch", "conv_padded"), "x")
    conv = report["layers"][0]
    assert (conv["name"], conv["status"], conv["b_members"], conv["a_members"]) == ("conv", "diverged",
                                                                                   ["pad", "conv"], None)
    assert causes(report) == [("padding-same-asymmetry", "conv")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_abs"] < 1e-5 < 1 < finding["before"]["max_abs"]
    assert finding["code"] == 'model.get_layer("pad").padding = ((0, 1), (0, 1))  # read at every call, and saved'
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True
    assert "conv [B: pad + conv]" in result.stdout and "only-b" not in result.stdout


@pytest.mark.parametrize("a, b, sample, grouped", [
    (side("tensorflow", "conv_same"), side("jax", "conv_padded_right"), "x", ("conv", "b_members", ["pad", "conv"])),
    (side("tensorflow", "dense_split"), side("jax", "dense_fused"), "v", ("d1", "a_members", ["d1", "act", "drop"])),
    # the folded kernel is A's scaled per channel: so are its gradients (kdiff.element_maps.GradientScale)
    (side("tensorflow", "conv_bn"), side("jax", "conv_bn_folded"), "x", ("conv", "a_members", ["conv", "bn"])),
    # a conv without a bias folded into one with a bias: the kernels' gradients compared, the bias has none on A
    (side("tensorflow", "conv_nobias_bn"), side("jax", "conv_nobias_bn_folded"), "x",
     ("conv", "a_members", ["conv", "bn"])),
    # on the branches of a residual block: every BatchNormalization folded, a padding split out, a softmax split
    (side("tensorflow", "residual"), side("torch", "residual_port"), "xr", ("c2", "b_members", ["pad2", "c2"])),
], ids=["padding-split-right", "activation-and-dropout-split", "batchnorm-folded-right",
        "batchnorm-folded-into-a-conv-without-bias", "residual-block-exported"])
def test_a_right_port_with_other_layers_matches_in_outputs_and_gradients(envs, tmp_path, a, b, sample, grouped):
    report, result = kdiff_json(tmp_path, "--a", a, "--b", b, PORTS / f"{sample}.npy", gradients=True)
    assert result.returncode == 0, result.stdout
    assert all(layer["status"] == "match" and layer["grad"]["match"] for layer in report["layers"])
    name, key, members = grouped
    assert next(layer for layer in report["layers"] if layer["name"] == name)[key] == members
    assert report["findings"] == [] and report["first_grad_divergence"] is None


def test_a_right_port_to_channels_last_has_no_false_weight_gradient_divergence(envs, tmp_path):
    # the port's Dense rows are permuted to (H, W, C) order, its kernel shape unchanged: A's gradient of the
    # kernel is compared through the same row permutation (kdiff.element_maps.find_row_permutation)
    report, result = kdiff_json(tmp_path, "--a", side("jax", "head_channels_first"),
                                "--b", side("tensorflow", "head_channels_last"), PORTS / "xcf.npy", gradients=True)
    assert result.returncode == 0, result.stdout
    dense = next(layer for layer in report["layers"] if layer["name"] == "dense")
    assert dense["status"] == "match" and dense["weight_grads"]["dense/kernel"]["match"] is True
    assert report["first_grad_divergence"] is None


def test_a_batchnorm_folded_with_another_epsilon_is_named_proven_and_written(envs, tmp_path):
    report, _ = kdiff_fix(tmp_path, side("tensorflow", "conv_bn"), side("torch", "conv_bn_folded_eps"), "x")
    conv = report["layers"][0]
    assert (conv["name"], conv["status"], conv["a_members"]) == ("conv", "diverged", ["conv", "bn"])
    assert causes(report) == [("batchnorm-folded-epsilon", "conv")]
    finding = report["findings"][0]
    assert finding["verified"] and finding["after"]["max_rel"] < 1e-3 < 1 < finding["before"]["max_abs"]
    assert "folded in with epsilon 1e-05" in finding["fix"] and "epsilon 0.001" in finding["fix"]
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True
    assert report["after_fixes"]["first_grad_divergence"] is None


RESIDUAL_GROUPS = [("c1", ["c1", "bn1"], None), ("c2", ["c2", "bn2"], ["pad2", "c2"]), ("c3", ["c3", "bn3"], None),
                   ("sc", ["sc", "sbn"], None), ("fc", None, ["fc", "soft"])]


@pytest.mark.parametrize("port, expected", [
    ("residual_port_eps", [("batchnorm-folded-epsilon", name) for name in ("c1", "c2", "c3", "sc")]),
    ("residual_port_pad", [("padding-same-asymmetry", "c2")]),
], ids=["every-fold-with-pytorchs-epsilon", "branch-padded-symmetrically"])
def test_faults_on_the_branches_of_a_residual_block_are_named_proven_and_written(envs, tmp_path, port, expected):
    """Groups on both branches of an Add (a conv with its BatchNormalization on side A, a padding and a conv on
    side B): each fault is found where it starts, proven on its group alone, and the written model matches."""
    report, _ = kdiff_fix(tmp_path, side("tensorflow", "residual"), side("jax", port), "xr")
    assert [(layer["name"], layer["a_members"], layer["b_members"]) for layer in report["layers"]
            if layer["a_members"] or layer["b_members"]] == RESIDUAL_GROUPS
    assert report["first_divergence"]["layer"] == expected[0][1]
    assert causes(report) == expected and all(finding["verified"] for finding in report["findings"])
    # of two epsilons that each fix the fold within tolerance, the likelier (1e-05, not 1.001e-05) is named
    assert all("epsilon 1e-05," in finding["fix"] for finding in report["findings"]
               if finding["cause"] == "batchnorm-folded-epsilon")
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True
    assert report["after_fixes"]["first_grad_divergence"] is None


def test_training_steps_of_a_port_with_groups_compare_each_groups_own_weights(envs, tmp_path):
    """kdiff train on a Dense whose activation and an extra Dropout are layers of their own on side A: each
    group's activation and output gradient are compared at its cut, its weights' gradients and updates at its
    own layer; with another Adam epsilon on side B the cause is named there (before: an IndexError, exit 3)."""
    import subprocess
    import sys

    import numpy as np

    labels = tmp_path / "y.npy"
    np.save(labels, np.random.default_rng(0).normal(size=(2, 4)).astype("float32"))
    out = tmp_path / "train.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", "train", "--a", side("tensorflow", "dense_split"),
                             "--b", side("jax", "dense_fused"), PORTS / "v.npy", labels, "--optimizer", "adam",
                             "--b-optimizer", ":epsilon=0.1", "--loss", "mse", "--steps", "2", "--json", out],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["first_divergence"] == {"step": 0, "weight": "d1/kernel"}
    rows = {layer["name"]: layer for layer in report["divergence_layers"]}
    assert set(rows) == {"d1", "d2"}
    assert list(rows["d1"]["weights"]) == ["d1/kernel", "d1/bias"]
    assert rows["d1"]["activation"]["match"] and rows["d1"]["weights"]["d1/kernel"]["gradient"]["match"]
    assert [finding["cause"] for finding in report["findings"]] == ["optimizer-epsilon"]
    assert all(finding["verified"] for finding in report["findings"])


@pytest.mark.parametrize("a, b, masking_on", [("masking_lstm", "masking_dropped", "A"),
                                              ("masking_dropped", "masking_lstm", "B")],
                         ids=["port-drops-the-masking", "port-adds-a-masking"])
def test_a_masking_layer_on_one_side_only_is_named_proven_and_written(envs, tmp_path, a, b, masking_on):
    """A Masking layer in front of an LSTM on one side only (tests/fixtures/ports/generate_masking.py): grouped
    with the LSTM, which diverges where the padding is read on one side and skipped on the other; proven on the
    whole model (side B's LSTM called as side A's is, masked or not), and the written model has the Masking
    layer added (or left out)."""
    report, _ = kdiff_fix(tmp_path, side("tensorflow", a), side("torch", b), "xm")
    lstm = report["layers"][0]
    assert (lstm["name"], lstm["status"]) == ("lstm", "diverged")
    assert lstm["a_members" if masking_on == "A" else "b_members"] == ["mask", "lstm"]
    assert causes(report) == [("mask-dropped", "lstm")] and report["findings"][0]["verified"]
    assert ("Add keras.layers.Masking(mask_value=0)" if masking_on == "A" else "Take 'mask' out") in \
        report["findings"][0]["fix"]
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True
