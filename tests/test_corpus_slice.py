"""A slice of the corpus of real architectures (benchmarks/corpus/, issue 13 item 4), generated on the fly by
the committed generator with the original code on Theano, and judged by kdiff against TensorFlow: Keras 2.3.1's
keras.applications MobileNet (keras_applications 1.0.8; alpha 0.25, channels_first, 32x32: ZeroPadding2D, a
3x3 Conv2D, DepthwiseConv2D, 1x1 convs, BatchNormalization, ReLU(6.), a Reshape/Dropout/Conv2D top) and Keras
1.2.2's keras.applications VGG16 in 'th' ordering (no top, 48x48: the model of the classic "converted model
predicts otherwise" report). The whole corpus: python -m benchmarks.corpus.run (benchmarks/corpus/RESULTS.md)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
GENERATE = REPO / "benchmarks" / "corpus" / "generate.py"


def generated(env_python, tmp_path, env: str, name: str) -> tuple[Path, dict]:
    result = subprocess.run([env_python(env), str(GENERATE), "--only", name, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / name
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["built"] is True
    return folder, meta


def kdiff_report(folder: Path, tmp_path: Path, *extra) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / f"{folder.name}.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", folder / "model.json", folder / "weights.h5",
                             folder / "sample.npy", "--a", "theano", "--b", "tensorflow", "--no-grad",
                             "--json", report, "--dump", tmp_path / f"{folder.name}-dump", *extra],
                            capture_output=True, text=True, timeout=900)
    assert report.exists(), result.stderr[-3000:]
    return result, json.loads(report.read_text())


def assert_theano_reproduces_the_generator(tmp_path: Path, folder: Path, last_layer: str) -> None:
    """Side A (kdiff's Theano worker loading the files) computes what the generator's Keras predicted."""
    dumped = np.load(tmp_path / f"{folder.name}-dump" / "a.npz")[last_layer]
    expected = np.load(folder / "theano_prediction.npy")
    assert dumped.shape == expected.shape
    assert float(np.abs(dumped - expected).max()) <= 1e-5 * float(np.abs(expected).max())


def test_keras_applications_mobilenet_channels_first(env_python, tmp_path):
    """Only MobileNet's first conv (3x3, stride 2) is a regular convolution with a kernel larger than 1x1; Keras
    2.3.1 on Theano pre-flips depthwise kernels, so the one flip named and verified there is the whole story."""
    env_python("theano"), env_python("tensorflow")
    folder, meta = generated(env_python, tmp_path, "theano", "ka_mobilenet_025_cf")
    assert meta["data_format_used"] == "channels_first" and meta["layers"] == 92
    calibration = meta["calibration"]["output_std_of_rescaled_layers"]
    assert 0.9 < calibration["min"] <= calibration["max"] < 1.1   # activations neither vanish nor saturate
    fixed = tmp_path / "fixed"
    result, report = kdiff_report(folder, tmp_path, "--write-fixed", fixed)
    assert result.returncode == 1, result.stderr[-3000:]
    assert report["first_divergence"]["layer"] == "conv1"
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]] == [("conv-kernel-flip", "conv1", True)]
    assert report["unexplained"] is None
    assert report["after_fixes"]["all_match"] is True
    assert report["written"]["verified"] is True
    assert_theano_reproduces_the_generator(tmp_path, folder, "act_softmax")
    # the written Keras 3 model, loaded as a user would, predicts what Theano predicted
    checked = subprocess.run([env_python("tensorflow"), str(REPO / "benchmarks" / "corpus" / "check_fixed.py"),
                              str(fixed / "model.keras"), str(folder / "sample.npy"),
                              str(folder / "theano_prediction.npy")],
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert json.loads(checked.stdout.strip().splitlines()[-1])["max_rel_to_scale"] < 1e-4


def test_keras1_applications_vgg16_th(env_python, tmp_path):
    """Keras 1.2.2's VGG16, 'th' ordering (kernels stored (out, in, rows, cols); a Keras 1 file names no backend,
    so nothing ever flipped them): every one of its 13 3x3 convolutions is flipped on Theano, each named and
    verified, and with the 13 fixes every layer matches."""
    env_python("theano-keras1"), env_python("tensorflow")
    folder, meta = generated(env_python, tmp_path, "theano-keras1", "k1_vgg16_th")
    assert meta["keras_version"] == "1.2.2" and meta["data_format_used"] == "th"
    convs = [f"block{block}_conv{i}" for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
             for i in range(1, count + 1)]
    result, report = kdiff_report(folder, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert report["backends"]["a"]["versions"]["keras"] == "1.2.2"
    assert report["first_divergence"]["layer"] == "block1_conv1"
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]] == \
        [("conv-kernel-flip", layer, True) for layer in convs]
    assert report["unexplained"] is None
    assert report["after_fixes"]["all_match"] is True
    assert_theano_reproduces_the_generator(tmp_path, folder, "block5_pool")


def test_keras_applications_densenet121_with_slashed_names_under_theanos_fast_compile(env_python, tmp_path, monkeypatch):
    """DenseNet121 (keras_applications 1.0.8, channels_first, 32x32; 428 layers): its layers are named 'conv1/conv',
    which Keras 2 allowed and Keras 3 refuses (the Keras 3 side builds them as 'conv1_conv', paired by name); and a
    graph this deep keeps Theano's default optimiser busy for longer than the suite can wait, so the generator and
    the theano worker run with THEANO_FLAGS=optimizer=fast_compile, as the README advises."""
    env_python("theano"), env_python("tensorflow")
    monkeypatch.setenv("THEANO_FLAGS", "optimizer=fast_compile")
    folder, meta = generated(env_python, tmp_path, "theano", "ka_densenet121_cf")
    assert meta["layers"] == 428
    result, report = kdiff_report(folder, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert report["first_divergence"]["layer"] == "conv1/conv"
    assert all(row["aligned_by"] == "name" for row in report["layers"])
    assert next(row for row in report["layers"] if row["name"] == "conv1/conv")["b_name"] == "conv1_conv"
    assert {f["cause"] for f in report["findings"]} == {"conv-kernel-flip"} and len(report["findings"]) == 43
    assert all(f["verified"] for f in report["findings"]) and report["unexplained"] is None
    assert report["after_fixes"]["all_match"] is True
    assert_theano_reproduces_the_generator(tmp_path, folder, "fc1000")
