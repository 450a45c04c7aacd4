"""Bad input: exit status 2 and a message naming the problem, before any environment or
worker is started (these tests would hang or fail without environments otherwise)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kdiff.cli import main
from kdiff.environments import kdiff_home

FIXTURE = Path(__file__).parent / "fixtures" / "k2_vgg_channels_first"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))  # no environment can be found or built here
    for name in ("model.json", "weights.h5", "sample.npy"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


def run(capsys, files, *args):
    argv = [str(files / "model.json"), str(files / "weights.h5"), str(files / "sample.npy"), *args]
    code = main(argv)
    captured = capsys.readouterr()
    assert not (kdiff_home() / "envs").exists(), "bad input must be caught before environments are touched"
    return code, captured.err


def test_truncated_weights(capsys, files):
    data = (files / "weights.h5").read_bytes()
    (files / "weights.h5").write_bytes(data[: len(data) // 3])
    code, err = run(capsys, files)
    assert code == 2 and "weights.h5 is not a readable HDF5 file" in err and "truncated" in err


def test_weights_that_are_not_hdf5(capsys, files):
    (files / "weights.h5").write_text("hello")
    code, err = run(capsys, files)
    assert code == 2 and "weights.h5 is not a readable HDF5 file" in err


def test_model_that_is_not_json(capsys, files):
    (files / "model.json").write_text("model: not json")
    code, err = run(capsys, files)
    assert code == 2 and "model.json is not a JSON file" in err


def test_json_of_the_wrong_shape(capsys, files):
    (files / "model.json").write_text(json.dumps({"layers": [1, 2, 3]}))
    code, err = run(capsys, files)
    assert code == 2 and "model.json is JSON but not a Keras model description" in err


def test_unsupported_layer_is_named(capsys, files):
    config = json.loads((files / "model.json").read_text())
    config["config"]["layers"][1]["class_name"] = "ConvLSTM2DCell"  # (a Keras class, never a saved layer)
    (files / "model.json").write_text(json.dumps(config))
    code, err = run(capsys, files)
    assert code == 2 and "not supported yet: ConvLSTM2DCell" in err


def test_sample_of_the_wrong_shape(capsys, files):
    np.save(files / "sample.npy", np.zeros((4, 16, 16, 3), np.float32))
    code, err = run(capsys, files)
    assert code == 2 and "sample.npy has shape (4, 16, 16, 3) but the model expects (batch, 3, 16, 16)" in err


def test_pickled_sample_is_refused_not_unpickled(capsys, files):
    np.save(files / "sample.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    code, err = run(capsys, files)
    assert code == 2 and "cannot be read without unpickling" in err


def test_sample_of_text(capsys, files):
    np.save(files / "sample.npy", np.array(["a", "b"]))
    code, err = run(capsys, files)
    assert code == 2 and "not numbers" in err


def test_missing_file(capsys, files):
    (files / "sample.npy").unlink()
    code, err = run(capsys, files)
    assert code == 2 and "sample file not found" in err


def test_unknown_backend(capsys, files):
    code, err = run(capsys, files, "--b", "caffe")
    assert code == 2 and "unknown backend 'caffe'" in err and "theano, tensorflow, jax, torch, tf-keras" in err


def test_theano_cannot_take_a_keras3_file(capsys, files):
    config = json.loads((files / "model.json").read_text())
    config["keras_version"] = "3.15.1"
    (files / "model.json").write_text(json.dumps(config))
    code, err = run(capsys, files, "--a", "theano")
    assert code == 2 and "the theano backend cannot load a Keras 3 model" in err


def test_wrong_number_of_files(capsys, files):
    assert main([str(files / "model.json")]) == 2
    assert "expected MODEL [WEIGHTS] SAMPLE, got 1 file(s)" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    assert main(["--frobnicate", "a", "b"]) == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--loss", "mse"], "--loss was given without --labels Y.npy"),
    (["--labels", "LABELS"], "--labels was given without --loss NAME"),
    (["--labels", "LABELS", "--loss", "mse", "--no-grad"], "--loss and --labels shape the gradients"),
])
def test_loss_and_labels_come_together_and_with_gradients(capsys, files, args, message):
    np.save(files / "y.npy", np.zeros((4, 10), np.float32))
    code, err = run(capsys, files, *[str(files / "y.npy") if a == "LABELS" else a for a in args])
    assert code == 2 and message in err


def test_labels_of_another_batch_size(capsys, files):
    np.save(files / "y.npy", np.zeros((3, 10), np.float32))
    code, err = run(capsys, files, "--labels", str(files / "y.npy"), "--loss", "mse")
    assert code == 2 and "y.npy has shape (3, 10): its first axis should be the sample's batch of 4" in err


def test_pickled_labels_are_refused_not_unpickled(capsys, files):
    np.save(files / "y.npy", np.array([{"label": 1}] * 4, dtype=object), allow_pickle=True)
    code, err = run(capsys, files, "--labels", str(files / "y.npy"), "--loss", "mse")
    assert code == 2 and "y.npy cannot be read without unpickling" in err


@pytest.mark.parametrize("args, said", [
    (("--b", "tensorflow@gpu-box"), "after '@' kdiff expects tcp://HOST:PORT or ipc://PATH"),
    (("--b", "tensorflow@tcp://10.1.2.3:5570"), "not a loopback address: a worker there listens only behind CURVE"),
    (("--b", "tensorflow@tcp://127.0.0.1:5570", "--keys", "/nonexistent/keys"), "--keys /nonexistent/keys"),
    (("--b", "tensorflow@tcp://127.0.0.1:5570", "--b-python", "/usr/bin/python3"), "leave out --b-python"),
])
def test_a_side_on_another_host_named_wrongly(capsys, files, args, said):
    code, err = run(capsys, files, *args)
    assert code == 2 and said in err and "Traceback" not in err


def test_kdiff_worker_refuses_to_listen_off_loopback_without_keys(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))
    code = main(["worker", "--listen", "tcp://0.0.0.0:5570", "--backend", "tensorflow"])
    err = capsys.readouterr().err
    assert code == 2 and "kdiff keys DIR" in err and not (kdiff_home() / "envs").exists()
