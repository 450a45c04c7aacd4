"""Fast: the one layout rule for Keras 1 layers that saved no dim_ordering (backends/common/keras1_ordering.py),
as the theano worker and the Keras 3 translation each apply it, on real Keras 1.2.2 files; and the Keras 1
Embedding's arguments as the Keras 3 translation reads them. No framework is imported."""
import copy
import json

import pytest

from backends.common import keras1_ordering
from backends.modern_keras import legacy_config
from backends.original_keras import loading
from tests.conftest import fixture_dir

LAYOUT = {"th": "channels_first", "tf": "channels_last"}


def model_json(name: str) -> dict:
    return json.loads((fixture_dir(name) / "model.json").read_text())


def keras1_model(stated: dict, version: str | None = "1.2.2") -> dict:
    """A Keras 1 functional model config: a ZeroPadding2D, an UpSampling2D and a Cropping2D (which save no
    ordering) between convolutions whose dim_ordering is `stated[name]` (left out where None)."""
    def conv(name):
        config = {"name": name, "nb_filter": 2, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                  "subsample": [1, 1], "activation": "linear", "bias": True, "init": "glorot_uniform"}
        if stated.get(name):
            config["dim_ordering"] = stated[name]
        return {"class_name": "Convolution2D", "name": name, "config": config}

    layers = [{"class_name": "InputLayer", "name": "input_1",
               "config": {"name": "input_1", "batch_input_shape": [None, 3, 8, 8], "input_dtype": "float32"}},
              {"class_name": "ZeroPadding2D", "name": "zeropadding2d_1",
               "config": {"name": "zeropadding2d_1", "padding": [1, 1]}},
              conv("convolution2d_1"),
              {"class_name": "UpSampling2D", "name": "upsampling2d_1",
               "config": {"name": "upsampling2d_1", "size": [2, 2]}},
              {"class_name": "Cropping2D", "name": "cropping2d_1",
               "config": {"name": "cropping2d_1", "cropping": [[1, 1], [1, 1]]}},
              conv("convolution2d_2")]
    previous = "input_1"
    for layer in layers[1:]:
        layer["inbound_nodes"] = [[[previous, 0, 0]]]
        previous = layer["name"]
    model = {"class_name": "Model", "config": {"name": "model_1", "layers": layers,
                                                "input_layers": [["input_1", 0, 0]],
                                                "output_layers": [[previous, 0, 0]]}}
    if version:
        model["keras_version"] = version
    return model


UNSAVED = ("zeropadding2d_1", "upsampling2d_1", "cropping2d_1")
CASES = [  # (orderings the convolutions state, file version, the ordering the others must get)
    ({"convolution2d_1": "th", "convolution2d_2": "th"}, "1.2.2", "th"),
    ({"convolution2d_1": "tf", "convolution2d_2": "tf"}, "1.2.2", "tf"),
    ({"convolution2d_1": "th", "convolution2d_2": None}, "1.2.2", "th"),   # one layer says it: all used it
    ({"convolution2d_1": "th", "convolution2d_2": "tf"}, "1.2.2", "tf"),   # they disagree: 1.2's default
    ({}, "1.2.2", "tf"),                                                   # none says it: 1.1+'s default
    ({}, "1.0.4", "th"),                                                   # ... up to 1.0.8: 'th'
    ({"convolution2d_1": "th", "convolution2d_2": "tf"}, "1.0.6", "th"),
    ({}, None, "tf"),                                                      # no version written
]


def theano_orderings(model: dict) -> dict:
    """The dim_ordering of every layer as the theano worker hands the config to Keras 1.2.2."""
    spec = loading.keras1_layout(copy.deepcopy(model), "1.2.2")
    return {entry["config"]["name"]: entry["config"].get("dim_ordering")
            for entry in keras1_ordering.layer_entries(spec) if entry["class_name"] != "Model"}


def keras3_layouts(model: dict) -> dict:
    """The data_format of every layer as the Keras 3 / tf_keras translation builds it."""
    return {spec.name: spec.config.get("data_format")
            for spec in legacy_config.parse_model_config(copy.deepcopy(model)).layers
            if spec.class_name != "InputLayer"}


@pytest.mark.parametrize("stated, version, expected", CASES)
def test_both_sides_infer_the_same_ordering(stated, version, expected):
    model = keras1_model(stated, version)
    assert keras1_ordering.inferred_ordering(model, version or "1") == expected
    theano, keras3 = theano_orderings(model), keras3_layouts(model)
    for name in UNSAVED:
        assert theano[name] == expected, name
        assert keras3[name] == LAYOUT[expected], name
    for name in ("convolution2d_1", "convolution2d_2"):   # what a layer states is never changed
        want = stated.get(name) or expected
        assert theano[name] == want and keras3[name] == LAYOUT[want], name


def test_the_rule_changes_only_copies_and_says_which_layers_it_filled():
    model = keras1_model({"convolution2d_1": "th", "convolution2d_2": "th"})
    before = copy.deepcopy(model)
    filled, names = keras1_ordering.fill_dim_ordering(model, "1.2.2")
    assert model == before
    assert names == list(UNSAVED)
    assert all(entry["config"]["dim_ordering"] == "th" for entry in keras1_ordering.layer_entries(filled)
               if entry["class_name"] in keras1_ordering.KERAS1_ORDERED_CLASSES)


def test_the_real_keras1_vgg_gets_th_on_both_sides():
    """k1_th_vgg_zeropad, written by Keras 1.2.2: its ZeroPadding2D configs hold no dim_ordering."""
    model = model_json("k1_th_vgg_zeropad")
    pads = [layer["config"]["name"] for layer in model["config"] if layer["class_name"] == "ZeroPadding2D"]
    assert len(pads) == 3 and all("dim_ordering" not in layer["config"] for layer in model["config"]
                                  if layer["class_name"] == "ZeroPadding2D")
    theano = loading.keras1_layout(model, "1.2.2")
    assert [layer["config"]["dim_ordering"] for layer in theano["config"]
            if layer["class_name"] == "ZeroPadding2D"] == ["th"] * 3
    keras3 = keras3_layouts(model)
    assert [keras3[name] for name in pads] == ["channels_first"] * 3


def test_keras2_files_are_left_as_they_are():
    model = model_json("k2_vgg_channels_first")
    assert loading.keras1_layout(copy.deepcopy(model), "2.3.1") == model


def test_keras1_embedding_keeps_output_dim():
    """Keras 1 imdb_cnn's Embedding: output_dim stays output_dim (Keras 2 renamed only Dense's and the recurrent
    layers'), dropout is dropped as Keras 2's legacy interface dropped it, input_length and mask_zero are kept."""
    description = legacy_config.parse_model_config(model_json("k1_imdb_cnn_lambda"))
    embedding = next(spec for spec in description.layers if spec.class_name == "Embedding")
    assert embedding.config["output_dim"] == 12 and embedding.config["input_dim"] == 60
    assert "units" not in embedding.config and "dropout" not in embedding.config
    assert embedding.config["input_length"] == 20 and embedding.config["mask_zero"] is False
    assert embedding.config["embeddings_initializer"] == "uniform"
    dense = next(spec for spec in description.layers if spec.class_name == "Dense")
    assert dense.config["units"] == 8 and "output_dim" not in dense.config
