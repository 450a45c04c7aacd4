"""The float-precision rule, paired: it must fire where one layer of a real Keras 3 model computes at
16 bits (a port made under a mixed-precision policy) and stay silent on a matching pair and on a
divergence of another cause, even one in a 16-bit layer. Real workers and real Keras throughout."""
import json
import zipfile

import pytest

from tests.conftest import fixture_dir
from tests.diagnosis_files import causes, edited_keras_archive, kdiff_json, keras_layer_config

pytestmark = pytest.mark.slow

TOLERANCE_ABS = 1e-5  # kdiff's default atol


@pytest.fixture(scope="module")
def envs(env_python):
    for name in ("tensorflow", "jax"):
        env_python(name)


def port_with(tmp_path, policy: str, layer: str, **settings):
    """k3_cnn with `layer`'s dtype policy set to `policy` (as Keras 3 writes it) and its other
    `settings` changed; its weights file untouched (float32, as the original's)."""
    port = tmp_path / f"{layer}_{policy}.keras"
    edited_keras_archive(fixture_dir("k3_cnn") / "model.keras", port, config=lambda config: keras_layer_config(
        config, layer).update(dtype={"module": "keras", "class_name": "DTypePolicy", "config": {"name": policy},
                                     "registered_name": None}, **settings))
    return port


def written_policy(folder, layer: str) -> str:
    with zipfile.ZipFile(folder / "model.keras") as written:
        return keras_layer_config(json.loads(written.read("config.json")), layer)["dtype"]["config"]["name"]


def assert_diverged_and_proven(report, layer: str):
    assert report["first_divergence"]["layer"] == layer  # the port really diverges without the fix
    assert causes(report) == [("float-precision", layer)]
    finding = report["findings"][0]
    assert finding["verified"] is True and finding["fix"] and finding["code"]
    assert finding["before"]["max_abs"] > 10 * TOLERANCE_ABS and finding["before"]["max_rel"] > 1e-3
    assert finding["after"]["max_abs"] < TOLERANCE_ABS
    assert report["after_fixes"]["all_match"] is True
    return finding


def test_float_precision_fires_on_a_mixed_bfloat16_layer_and_the_written_model_computes_in_float32(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = port_with(tmp_path, "mixed_bfloat16", "conv_b")
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                                folder / "sample.npy", "--write-fixed", tmp_path / "fixed")
    finding = assert_diverged_and_proven(report, "conv_b")
    assert "to float32 (it is mixed_bfloat16)" in finding["fix"]
    assert finding["code"].startswith('model.get_layer("conv_b").dtype_policy = "float32"')
    assert result.returncode == 1 and report["written"]["verified"] is True
    assert written_policy(tmp_path / "fixed", "conv_b") == "float32"


def test_float_precision_fires_on_a_float16_dense_and_takes_side_a_weights_for_those_rounded_to_16_bits(
        envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = port_with(tmp_path, "float16", "probs")  # float16 stores the weights in float16 too
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"tensorflow:{port}",
                           folder / "sample.npy", "--write-fixed", tmp_path / "fixed")
    finding = assert_diverged_and_proven(report, "probs")
    assert "load its weights from side A" in finding["fix"]
    assert report["written"]["verified"] is True and written_policy(tmp_path / "fixed", "probs") == "float32"


def test_float_precision_stays_silent_on_a_matching_pair(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    report, result = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}",
                                "--b", f"jax:{folder / 'model.keras'}", folder / "sample.npy")
    assert result.returncode == 0 and report["findings"] == [] and report["first_divergence"] is None


def test_float_precision_stays_silent_on_a_batchnorm_epsilon_port(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = tmp_path / "port.keras"  # a port that kept PyTorch's epsilon, every layer float32
    edited_keras_archive(folder / "model.keras", port,
                         config=lambda config: keras_layer_config(config, "bn_a").update(epsilon=1e-5))
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                           folder / "sample.npy")
    assert causes(report) == [("batchnorm-epsilon", "bn_a")]


def test_float_precision_claims_nothing_where_a_bfloat16_layer_also_diverges_for_another_cause(envs, tmp_path):
    folder = fixture_dir("k3_cnn")
    port = port_with(tmp_path, "mixed_bfloat16", "bn_a", epsilon=1e-5)  # float32 alone does not remove this
    report, _ = kdiff_json(tmp_path, "--a", f"tensorflow:{folder / 'model.keras'}", "--b", f"jax:{port}",
                           folder / "sample.npy")
    assert report["first_divergence"]["layer"] == "bn_a"
    assert "float-precision" not in [cause for cause, _ in causes(report)]
