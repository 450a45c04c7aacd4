"""Fast: full-model .h5 files (model.save() of Keras 1.2.2, Keras 2.3.1 on Theano, tf_keras) as the coordinator
reads them (kdiff/full_model_h5.py, kdiff/model_files.py, kdiff.cli.resolve_sides), on real files; no worker."""
import argparse

import pytest

from kdiff import full_model_h5
from kdiff.cli_arguments import resolve_sides
from kdiff.errors import InputError
from kdiff.model_files import inspect_model
from tests.conftest import fixture_dir

FILES = {  # fixture -> (format's Keras major, keras_version, tf.keras?, the default sides)
    "k1_imdb_cnn_lambda": (1, "1.2.2", False, ("theano", "tensorflow")),
    "k2_full_model": (2, "2.3.1", False, ("theano", "tensorflow")),
    "tf_full_model": (2, "2.21.0", True, ("tf-keras", "tensorflow")),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_full_model_file_is_a_model(name):
    major, version, tf_keras, _ = FILES[name]
    model = inspect_model(str(fixture_dir(name) / "model.h5"), None)
    assert (model.format, model.keras_major, model.keras_version, model.tf_keras) == ("keras-h5", major, version,
                                                                                       tf_keras)
    assert model.input_shapes and model.layer_classes


@pytest.mark.parametrize("name", sorted(FILES))
def test_model_and_sample_alone_give_both_sides(name, tmp_path):
    folder = fixture_dir(name)
    args = argparse.Namespace(files=[str(folder / "model.h5"), str(folder / "sample.npy")], a=None, b=None,
                              a_python=None, b_python=None, b_layout=None)
    a, b, (sample,) = resolve_sides(args)
    assert (a.backend, b.backend) == FILES[name][3]
    assert a.model == b.model == str(folder / "model.h5") and a.weights is b.weights is None
    assert sample == str(folder / "sample.npy")


def test_keras1_files_keep_their_version_beside_the_architecture():
    model = full_model_h5.read_full_model(fixture_dir("k1_imdb_cnn_lambda") / "model.h5")
    assert model.keras_version == "1.2.2" and model.backend == "" and model.has_weights
    assert model.model_config["keras_version"] == "1.2.2" and model.model_config["class_name"] == "Sequential"


def test_training_configurations_as_kdiff_train_names_them():
    k1 = full_model_h5.training_setup(fixture_dir("k1_imdb_cnn_lambda") / "model.h5")
    assert (k1.optimizer, k1.loss) == ("adam", "binary_crossentropy")   # Keras 1: 'lr', epsilon 1e-8
    assert k1.settings == {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}
    k2 = full_model_h5.training_setup(fixture_dir("k2_full_model") / "model.h5")
    assert (k2.optimizer, k2.settings, k2.loss) == ("sgd", {"learning_rate": 0.05, "momentum": 0.9},
                                                    "categorical_crossentropy")
    tf = full_model_h5.training_setup(fixture_dir("tf_full_model") / "model.h5")   # 'Custom>Adam', a loss object
    assert (tf.optimizer, tf.settings["learning_rate"], tf.loss) == ("adam", 0.01, "categorical_crossentropy")
    assert k1.left_out == k2.left_out == tf.left_out == ()


def test_settings_kdiff_does_not_take_are_named():
    setup_config = {"optimizer_config": {"class_name": "SGD", "config": {"lr": 0.1, "decay": 1e-4, "nesterov": False}},
                    "loss": {"out_a": "mse", "out_b": "mse"}}
    assert full_model_h5._loss_name(setup_config["loss"], "m.h5") == "mse"
    with pytest.raises(InputError, match="no single loss"):
        full_model_h5._loss_name({"a": "mse", "b": "mae"}, "m.h5")
    with pytest.raises(InputError, match="from_logits"):
        full_model_h5._loss_name({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}, "m.h5")


def test_a_weights_only_file_as_the_model_is_refused_with_a_hint():
    with pytest.raises(InputError) as error:
        inspect_model(str(fixture_dir("k2_vgg_channels_first") / "weights.h5"), None)
    assert "holds weights only" in error.value.message and "model.save" in error.value.hint


@pytest.mark.parametrize("version, backend, expected", [
    ("2.3.1", "theano", False), ("2.3.1", "tensorflow", False), ("2.2.4-tf", "tensorflow", True),
    ("2.4.0", "tensorflow", True), ("2.21.0", "tensorflow", True), ("1.2.2", "", False), ("2.13.1", "", True)])
def test_which_files_tf_keras_wrote(version, backend, expected):
    assert full_model_h5.written_by_tf_keras(version, backend) is expected
