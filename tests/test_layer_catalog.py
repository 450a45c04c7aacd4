"""kdiff/protocol/layer_catalog.py is the one list of layer classes: the coordinator's pre-check and the Keras 3 /
tf_keras translation both read it, it names every public layer class of the real Keras 1.2.2 and 2.3.1, and
every class it accepts is one the translation can build."""
import json
import subprocess

import pytest

from backends.modern_keras import build, legacy_config
from kdiff import model_files
from kdiff.protocol import layer_catalog
from kdiff.errors import InputError

LIST_PUBLIC_LAYERS = """
import sys, inspect, json
sys.path.insert(0, sys.argv[2])
from backends.original_keras import compat
compat.configure_theano(sys.argv[3])
compat.prepare_keras(int(sys.argv[1]))
from keras import layers
from keras.engine import Layer
print(json.dumps(sorted({obj.__name__ for obj in vars(layers).values()
                         if inspect.isclass(obj) and issubclass(obj, Layer)})))
"""


def test_both_sides_read_the_one_catalog():
    assert model_files.SUPPORTED_LAYERS is layer_catalog.SUPPORTED_LAYERS
    assert legacy_config.SUPPORTED_CLASSES is layer_catalog.DESCRIPTION_CLASSES
    assert legacy_config.KERAS1_CLASS_RENAMES is layer_catalog.KERAS1_CLASS_RENAMES


def test_every_public_layer_of_keras_1_and_2_is_accepted():
    for public in (layer_catalog.KERAS1_PUBLIC_LAYERS, layer_catalog.KERAS2_PUBLIC_LAYERS):
        refused = public - layer_catalog.NOT_SAVED_AS_LAYERS - layer_catalog.SUPPORTED_LAYERS
        assert not refused, refused


def test_every_class_accepted_is_one_the_translation_builds():
    built_specially = {"InputLayer", "Sequential", "TimeDistributed", "StackedRNNCells"}
    for class_name in layer_catalog.DESCRIPTION_CLASSES - built_specially:
        assert class_name in build.LAYER_ARGUMENTS, class_name
    for old, new in {**layer_catalog.KERAS1_CLASS_RENAMES, **layer_catalog.CUDNN_TRANSLATIONS}.items():
        assert new in layer_catalog.DESCRIPTION_CLASSES, (old, new)


def _model_json(tmp_path, class_names):
    layers = [{"class_name": name, "config": {"name": f"layer_{i}"}} for i, name in enumerate(class_names)]
    layers[0]["config"]["batch_input_shape"] = [None, 4]
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"class_name": "Sequential", "keras_version": "2.3.1", "config": layers}))
    return path


def test_the_pre_check_accepts_every_listed_class_and_names_one_it_does_not(tmp_path):
    names = sorted(layer_catalog.KERAS2_PUBLIC_LAYERS - layer_catalog.NOT_SAVED_AS_LAYERS - {"InputLayer"})
    assert set(model_files.inspect_model(str(_model_json(tmp_path, names)), None).layer_classes) == set(names)
    with pytest.raises(InputError, match="ConvLSTM2DCell"):
        model_files.inspect_model(str(_model_json(tmp_path, ["Dense", "ConvLSTM2DCell"])), None)


def test_the_pre_check_looks_inside_an_rnn_at_its_cells(tmp_path):
    cells = {"class_name": "StackedRNNCells", "config": {"cells": [
        {"class_name": "LSTMCell", "config": {"units": 3}}, {"class_name": "MyCell", "config": {}}]}}
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"class_name": "Sequential", "keras_version": "2.3.1", "config": [
        {"class_name": "RNN", "config": {"name": "rnn_1", "batch_input_shape": [None, 3, 2], "cell": cells}}]}))
    with pytest.raises(InputError, match="MyCell"):
        model_files.inspect_model(str(path), None)


@pytest.mark.slow
@pytest.mark.parametrize("major, env, listed", [(2, "theano", layer_catalog.KERAS2_PUBLIC_LAYERS),
                                                (1, "theano-keras1", layer_catalog.KERAS1_PUBLIC_LAYERS)])
def test_the_catalog_lists_the_real_keras_public_layers(env_python, tmp_path, major, env, listed):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = subprocess.run([env_python(env), "-c", LIST_PUBLIC_LAYERS, str(major), str(root), str(tmp_path / "cache")],
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    real = set(json.loads(found.stdout.strip().splitlines()[-1]))
    assert real == set(listed)
