"""Write the corpus of real architectures written by others (issue 13, item 4) with the original code on Theano:

- keras.applications of Keras 2.3.1 (keras_applications 1.0.8): every model, channels_first and channels_last,
  ``weights=None``, the smallest input each allows (32x32; InceptionV3 and InceptionResNetV2 75x75, Xception
  71x71);
- keras.applications of Keras 1.2.2 (VGG16, VGG19, ResNet50, InceptionV3, Xception, MusicTaggerCRNN), 'th' and
  'tf' orderings, ``weights=None``, ``include_top=False`` where Keras 1.2.2 demands 224x224 for the top;
- model definitions of Keras 2.3.1's examples (benchmarks/corpus/examples/, copied with attribution).

Run inside the Theano environment of the Keras the entries need (the runner does this for you):

    $(kdiff env path theano) benchmarks/corpus/generate.py [--only NAME ...] [--out DIR]
    $(kdiff env path theano-keras1) benchmarks/corpus/generate.py [--only NAME ...] [--out DIR]
    python benchmarks/corpus/generate.py --list        # every entry, in any Python

Each model gets a folder OUT/<name>/ (default $KDIFF_HOME/corpus, ~/.cache/kdiff/corpus): model.json
(model.to_json()), weights.h5 (model.save_weights(), string attributes fixed-length as h5py 2 wrote them),
sample.npy (2 samples), theano_prediction.npy (that Keras's prediction of them on Theano, inference mode) and
meta.json (source, description, data format, layer and parameter counts, the calibration's activation
statistics, the time the build took). An entry whose original code refuses to build on Theano gets only a
meta.json saying why (``"built": false``).

Weights: Keras's own initialisers (seeded; drawn with numpy, see numpy_initial_values), then calibrated on a batch of 8 other samples so that every layer's
output is O(1): layer by layer in dependency order, a layer with a linear or ReLU output is rescaled to unit
standard deviation and given small random biases, a softmax or sigmoid Dense to logits of unit standard
deviation, and every BatchNormalization gets the mean and variance of
what reaches it as its moving statistics (non-trivial values: the data's), gamma in [0.5, 1.5] and beta of
scale 0.2. Recurrent layers keep Keras's initialisers.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 1234
SAMPLES = 2          # in sample.npy
CALIBRATION = 8      # samples the weights are calibrated on (not the sample's)
KA = "keras.applications of Keras 2.3.1 (keras_applications 1.0.8)"
K1A = "keras.applications of Keras 1.2.2"
EX = "examples/ of Keras 2.3.1"


def default_out() -> str:
    return os.path.join(os.environ.get("KDIFF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "kdiff"),
                        "corpus")


@dataclass(frozen=True)
class Entry:
    name: str
    keras: int                  # 1 or 2: the Keras (and Theano environment) that builds it
    source: str                 # where the code comes from
    builder: str                # what is called
    data_format: str            # channels_first / channels_last (Keras 1: 'th' / 'tf' orderings)
    kwargs: dict = field(default_factory=dict)
    size: str = "default"       # "default": the corpus run includes it; "extended": --extended only (long runs)


def _applications() -> list[Entry]:
    entries = []
    # (function, input side, size class): the smallest input each allows with the classifier on top
    models = [("VGG16", 32, "default"), ("VGG19", 32, "default"), ("ResNet50", 32, "default"),
              ("ResNet101", 32, "extended"), ("ResNet152", 32, "extended"), ("ResNet50V2", 32, "default"),
              ("ResNet101V2", 32, "extended"), ("ResNet152V2", 32, "extended"), ("InceptionV3", 75, "default"),
              ("InceptionResNetV2", 75, "default"), ("Xception", 71, "default"), ("MobileNet", 32, "default"),
              ("MobileNetV2", 32, "default"), ("DenseNet121", 32, "default"), ("DenseNet169", 32, "extended"),
              ("DenseNet201", 32, "extended"), ("NASNetMobile", 32, "default"), ("NASNetLarge", 32, "extended")]
    for function, side, size in models:
        for data_format, short in (("channels_first", "cf"), ("channels_last", "cl")):
            shape = (3, side, side) if data_format == "channels_first" else (side, side, 3)
            entries.append(Entry(f"ka_{function.lower()}_{short}", 2, KA, f"keras.applications.{function}",
                                 data_format, {"weights": None, "input_shape": shape}, size))
    # the narrowest MobileNet, for the test suite's slice (tests/test_corpus_slice.py)
    entries.append(Entry("ka_mobilenet_025_cf", 2, KA, "keras.applications.MobileNet", "channels_first",
                         {"weights": None, "input_shape": (3, 32, 32), "alpha": 0.25}))
    return entries


def _keras1_applications() -> list[Entry]:
    entries = []
    # Keras 1.2.2 accepts include_top=True only at 224x224 (299 for InceptionV3 and Xception): without the top,
    # at the smallest input each allows
    models = [("vgg16", "VGG16", 48, False), ("vgg19", "VGG19", 48, False), ("resnet50", "ResNet50", 197, False),
              ("inception_v3", "InceptionV3", 139, False), ("xception", "Xception", 71, False),
              ("music_tagger_crnn", "MusicTaggerCRNN", None, True)]
    for module, function, side, top in models:
        for ordering in ("th", "tf"):
            kwargs = {"weights": None, "include_top": top}
            if side is not None:
                kwargs["input_shape"] = (3, side, side) if ordering == "th" else (side, side, 3)
            entries.append(Entry(f"k1_{function.lower()}_{ordering}", 1, K1A,
                                 f"keras.applications.{module}.{function}", ordering, kwargs))
    return entries


def _examples() -> list[Entry]:
    entries = []
    both = ("channels_first", "channels_last")
    for module, formats, kwargs, suffix in [
            ("mnist_cnn", both, {}, ""), ("cifar10_cnn", both, {}, ""),
            ("cifar10_resnet", both, {"version": 1}, "_v1"), ("cifar10_resnet", ("channels_last",), {"version": 2}, "_v2"),
            ("imdb_cnn_lstm", ("channels_last",), {}, ""), ("imdb_bidirectional_lstm", ("channels_last",), {}, ""),
            ("addition_rnn", ("channels_last",), {}, ""), ("lstm_text_generation", ("channels_last",), {}, ""),
            ("reuters_mlp", ("channels_last",), {}, ""), ("mnist_hierarchical_rnn", ("channels_last",), {}, ""),
            ("conv_lstm", ("channels_last",), {}, ""), ("mnist_denoising_autoencoder", ("channels_last",), {}, ""),
            ("antirectifier", ("channels_last",), {}, "")]:
        for data_format in formats:
            short = "" if len(formats) == 1 else ("_cf" if data_format == "channels_first" else "_cl")
            entries.append(Entry(f"ex_{module}{suffix}{short}", 2, EX, f"benchmarks.corpus.examples.{module}.build",
                                 data_format, kwargs))
    return entries


ENTRIES = {entry.name: entry for entry in _applications() + _keras1_applications() + _examples()}


# --- building -------------------------------------------------------------------------------------------


def build(keras, entry: Entry):
    """The model as the original code builds it, and what the generator needs to know about its inputs."""
    K = keras.backend
    if entry.keras == 1:
        K.set_image_dim_ordering(entry.data_format)
    else:
        K.set_image_data_format(entry.data_format)
    module, function = entry.builder.rsplit(".", 1)
    with numpy_initial_values(keras):
        if entry.source == EX:
            return getattr(importlib.import_module(module), function)(keras, entry.data_format, **entry.kwargs)
        model = getattr(importlib.import_module(module), function)(**entry.kwargs)
    return {"model": model, "sample": "image"}


@contextlib.contextmanager
def numpy_initial_values(keras):
    """Keras 2.3.1's own initializers, drawn with numpy (seeded) instead of as Theano random ops: K.variable
    evaluates those by compiling one Theano function per weight, 0.3-0.4 s each, minutes for a deep model.
    VarianceScaling (glorot_*, he_*, lecun_*), Zeros, Ones and Constant are drawn as Keras defines them;
    any other initializer (Orthogonal and Identity draw with numpy already; LSTM's unit_forget_bias
    closure) is Keras's own. Keras 1.2.2 draws with numpy itself."""
    if keras.__version__.startswith("1."):
        yield
        return
    from keras import initializers as I
    from keras.engine import base_layer

    original = base_layer.initializers

    def drawn(initializer):
        def draw(shape, dtype=None):
            dtype = dtype or keras.backend.floatx()
            shape = tuple(int(d) for d in shape)
            if isinstance(initializer, I.VarianceScaling):
                fan_in, fan_out = I._compute_fans(shape)
                scale = initializer.scale / max(1.0, {"fan_in": fan_in, "fan_out": fan_out}.get(
                    initializer.mode, float(fan_in + fan_out) / 2))
                if initializer.distribution == "normal":   # Keras: truncated at two standard deviations
                    stddev = np.sqrt(scale) / .87962566103423978
                    values = np.random.normal(0.0, stddev, shape)
                    while True:
                        outside = np.abs(values) > 2 * stddev
                        if not outside.any():
                            break
                        values[outside] = np.random.normal(0.0, stddev, int(outside.sum()))
                else:
                    limit = np.sqrt(3.0 * scale)
                    values = np.random.uniform(-limit, limit, shape)
                return values.astype(dtype)
            if isinstance(initializer, I.Zeros):
                return np.zeros(shape, dtype)
            if isinstance(initializer, I.Ones):
                return np.ones(shape, dtype)
            if isinstance(initializer, I.Constant):
                return np.full(shape, initializer.value, dtype)
            return initializer(shape, dtype=dtype)
        return draw

    class NumpyInitializers:
        def __getattr__(self, name):
            return getattr(original, name)

        @staticmethod
        def get(identifier):
            return drawn(original.get(identifier))

    base_layer.initializers = NumpyInitializers()
    try:
        yield
    finally:
        base_layer.initializers = original


def samples(model, kind: str, shape_override, count: int, rng) -> np.ndarray:
    """Inputs of the kind the model was made for: token ids for an Embedding, one-hot characters, pixels."""
    shape = tuple(shape_override) if shape_override else tuple(model.input_shape[1:])
    shape = (count,) + shape
    if kind == "tokens":
        first = [layer for layer in model.layers if type(layer).__name__ == "Embedding"][0]
        return rng.randint(1, first.input_dim, size=shape).astype("int32")
    if kind == "one_hot":
        ids = rng.randint(0, shape[-1], size=shape[:-1])
        return np.eye(shape[-1], dtype="float32")[ids]
    if kind == "binary":
        return (rng.uniform(size=shape) < 0.1).astype("float32")
    if kind == "unit":
        return rng.uniform(0, 1, size=shape).astype("float32")
    if kind == "movie":   # a few bright squares on black, as conv_lstm.py's generate_movies draws them
        movie = np.zeros(shape, dtype="float32")
        for i in range(count):
            for _ in range(rng.randint(3, 8)):
                x, y, w = rng.randint(5, shape[2] - 5), rng.randint(5, shape[3] - 5), rng.randint(1, 3)
                dx, dy = rng.randint(-1, 2), rng.randint(-1, 2)
                for t in range(shape[1]):
                    movie[i, t, x + dx * t - w: x + dx * t + w, y + dy * t - w: y + dy * t + w] = 1.0
        return movie + rng.normal(0, 0.1, size=shape).astype("float32")
    # "image", "centred": standardised pixels
    return rng.normal(0, 1, size=shape).astype("float32")


# --- calibration ----------------------------------------------------------------------------------------

RECURRENT = {"LSTM", "GRU", "SimpleRNN", "ConvLSTM2D", "RNN", "Bidirectional", "CuDNNLSTM", "CuDNNGRU"}
HOMOGENEOUS = {"linear", "relu"}   # act(c * z) == c * act(z) for c > 0


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", None)


def _kind(layer) -> str | None:
    """How the calibration treats a layer with weights: 'bn', 'scale', or None (left as initialised)."""
    name = type(layer).__name__
    if hasattr(layer, "layers"):   # a nested model: calibrated on its own (an example's "parts")
        return None
    if name == "BatchNormalization":
        return "bn"
    inner = layer.layer if name == "TimeDistributed" else layer
    if name in RECURRENT or type(inner).__name__ in RECURRENT:
        return None
    if _activation_name(inner) in HOMOGENEOUS:
        return "scale"
    # a softmax / sigmoid Dense (a classifier's head): its logits scaled, computed from its input
    return "logits" if type(inner).__name__ == "Dense" else None


def _weight_role(variable) -> str:
    short = variable.name.split("/")[-1].split(":")[0].lower()
    for role in ("gamma", "beta", "moving_mean", "running_mean", "moving_variance", "running_std"):
        if short.endswith(role):
            return role
    return short


# Theano's graph optimiser on the calibration function of InceptionV3 or DenseNet121 (every calibrated layer's tensor
# an output) ran past an hour; calibration needs no optimised graph: Theano's fast_compile optimiser (which still
# puts in the C convolutions) and its C linker (FAST_COMPILE's Python linker cannot run CorrMM)
CALIBRATION_MODE = {"linker": "cvm", "optimizer": "fast_compile"}


def calibrate(keras, model, batch: np.ndarray, rng, predict_on: np.ndarray | None = None):
    """Calibrate `model`'s weights on `batch` in place (see the module's docstring): the statistics of every
    calibrated layer's output afterwards, and the model's prediction of `predict_on` (by `predict`, compiled as
    the theano worker compiles: Theano's default mode)."""
    from backends.original_keras.graph import model_layers, model_nodes, source_name

    import theano

    K = keras.backend
    layers = model_layers(model)
    level_out: dict[str, int] = {}
    targets = []   # (level, layer, kind, tensor)
    consumers: dict[str, list] = {}
    for layer in layers:
        for node in model_nodes(model, layer):
            for source in node.inbound_layers:
                consumers.setdefault(source_name(source), []).append(layer)
    for layer in layers:
        nodes = model_nodes(model, layer)
        up = max([level_out.get(source_name(s), 0) for node in nodes for s in node.inbound_layers] or [0])
        kind = _kind(layer) if layer.get_weights() else None
        if kind == "scale" and consumers.get(layer.name) and all(
                type(c).__name__ == "BatchNormalization" for c in consumers[layer.name]):
            _random_biases(layer, rng, 1.0)   # its scale is the BatchNormalization's business
            kind = None
        if kind is None:
            level_out[layer.name] = up
            continue
        tensor = nodes[0].input_tensors[0] if kind in ("bn", "logits") else nodes[0].output_tensors[0]
        targets.append((up + 1, layer, kind, tensor))
        level_out[layer.name] = up + 1
    function = K.function(model.inputs, [t for _, _, _, t in targets] + [model.outputs[0]], mode=theano.compile.Mode(**CALIBRATION_MODE))
    levels = sorted({level for level, _, _, _ in targets})
    for level in levels:
        values = function([batch])
        for (lvl, layer, kind, _), value in zip(targets, values):
            if lvl == level:
                {"bn": _set_bn, "scale": _rescale, "logits": _rescale_logits}[kind](
                    layer, np.asarray(value, dtype="float64"), rng)
    values = function([batch])
    stds = [float(np.std(v)) for (_, _, kind, _), v in zip(targets, values) if kind == "scale"]
    prediction = None if predict_on is None else predict(keras, model, predict_on)
    return {"calibrated_layers": len(targets), "passes": len(levels) + 1,
            "output_std_of_rescaled_layers": _summary(stds)}, prediction


def _summary(values) -> dict | None:
    if not values:
        return None
    return {"min": round(min(values), 4), "median": round(float(np.median(values)), 4), "max": round(max(values), 4)}


def _random_biases(layer, rng, scale: float) -> None:
    weights = layer.get_weights()
    for i, variable in enumerate(layer.weights):
        if _weight_role(variable) in ("bias", "b") or variable.name.split("/")[-1].split(":")[0].endswith("_b"):
            weights[i] = rng.normal(0, 0.1 * scale, weights[i].shape).astype("float32")
    layer.set_weights(weights)


def _rescale(layer, output: np.ndarray, rng) -> None:
    """Unit standard deviation of the layer's output (its activation is linear or ReLU), small random biases."""
    std = float(np.std(output))
    if not np.isfinite(std) or std < 1e-12:
        return
    weights = layer.get_weights()
    skip_first = "Separable" in type(layer).__name__   # depthwise then pointwise: scale the pointwise only
    for i, variable in enumerate(layer.weights):
        if not (skip_first and i == 0):
            weights[i] = (weights[i] / std).astype("float32")
    layer.set_weights(weights)
    _random_biases(layer, rng, 1.0)


def _rescale_logits(layer, inputs: np.ndarray, rng) -> None:
    """Unit standard deviation of a softmax / sigmoid Dense's pre-activation (its kernel times its input)."""
    dense = layer.layer if type(layer).__name__ == "TimeDistributed" else layer
    kernel, *rest = dense.get_weights()
    std = float(np.std(inputs.reshape(-1, kernel.shape[0]) @ kernel))
    if np.isfinite(std) and std > 1e-12:
        dense.set_weights([(kernel / std).astype("float32"), *rest])
    _random_biases(dense, rng, 1.0)


def _set_bn(layer, inputs: np.ndarray, rng) -> None:
    """The moving statistics of what reaches the layer; gamma, beta random around 1 and 0."""
    axis = layer.axis if layer.axis >= 0 else inputs.ndim + layer.axis
    reduce = tuple(i for i in range(inputs.ndim) if i != axis)
    mean, variance = inputs.mean(axis=reduce), inputs.var(axis=reduce)
    weights = layer.get_weights()
    for i, variable in enumerate(layer.weights):
        role = _weight_role(variable)
        shape = weights[i].shape
        value = {"gamma": lambda: rng.uniform(0.5, 1.5, shape), "beta": lambda: rng.normal(0, 0.2, shape),
                 "moving_mean": lambda: mean, "running_mean": lambda: mean,
                 "moving_variance": lambda: variance, "running_std": lambda: variance}.get(role)  # Keras 1's
        if value is not None:                                                                   # "std" is one
            weights[i] = np.asarray(value(), dtype="float32").reshape(shape)
    layer.set_weights(weights)


# --- writing --------------------------------------------------------------------------------------------


def stated_format(model) -> str | None:
    """The layout the model's first image layer states (data_format in Keras 2, dim_ordering in Keras 1)."""
    from backends.original_keras.graph import model_layers

    for layer in model_layers(model):
        stated = getattr(layer, "data_format", None) or getattr(layer, "dim_ordering", None)
        if stated in ("channels_first", "channels_last", "th", "tf") and "Conv" in type(layer).__name__:
            return stated
    return None


def predict(keras, model, x: np.ndarray) -> np.ndarray:
    # the learning phase is a constant (compat.prepare_keras): a plain function of the inputs, as the worker runs
    outputs = keras.backend.function(model.inputs, model.outputs)([x])
    return np.asarray(outputs[0])


def write(keras, entry: Entry, out_dir: str) -> dict:
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "fixtures"))
    import generate_theano_fixtures as fixtures   # the fixtures' helpers: layer names, h5py 2 strings

    folder = os.path.join(out_dir, entry.name)
    os.makedirs(folder, exist_ok=True)
    for stale in ("model.json", "weights.h5", "sample.npy", "theano_prediction.npy", "meta.json"):
        if os.path.exists(os.path.join(folder, stale)):
            os.remove(os.path.join(folder, stale))
    meta = {"name": entry.name, "source": entry.source, "builder": entry.builder,
            "arguments": {k: list(v) if isinstance(v, tuple) else v for k, v in entry.kwargs.items()},
            "data_format": entry.data_format, "keras_version": keras.__version__, "size": entry.size}
    started = time.perf_counter()
    fixtures.reset_layer_names(keras)
    np.random.seed(SEED)   # Keras's initialisers draw from numpy's global generator on Theano
    rng = np.random.RandomState(SEED)
    try:
        built = build(keras, entry)
    except Exception as exc:   # noqa: BLE001 -- the original code refusing is a result worth keeping
        meta.update(built=False, refusal=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=4).splitlines()[-6:])
        _write_meta(folder, meta)
        return {"name": entry.name, "built": False, "refusal": meta["refusal"]}
    model = built["model"]
    actual_format = stated_format(model) or entry.data_format
    if actual_format != entry.data_format:   # NASNet switches channels_first to channels_last itself
        meta.update(built=False, refusal=f"{entry.builder} builds its model in {actual_format} when asked for "
                                         f"{entry.data_format} (a warning, then the other layout)")
        _write_meta(folder, meta)
        return {"name": entry.name, "built": False, "refusal": meta["refusal"]}
    meta["built"] = True
    meta["data_format_used"] = actual_format
    calibration_batch = samples(model, built["sample"], built.get("sample_shape"), CALIBRATION, rng)
    sample = samples(model, built["sample"], built.get("sample_shape"), SAMPLES, rng)
    calibrations = []
    batch = calibration_batch
    for part in built.get("parts", []):
        calibrations.append(calibrate(keras, part, batch, rng)[0])
        batch = predict(keras, part, batch)
    calibration, prediction = calibrate(keras, model, calibration_batch, rng, predict_on=sample)
    calibrations.append(calibration)
    for layer in model.layers:
        fixtures.unique_weight_names(layer)
    with open(os.path.join(folder, "model.json"), "w") as f:
        f.write(model.to_json())
    with fixtures.h5py2_string_attributes():   # as h5py 2 stored these Keras versions' strings
        model.save_weights(os.path.join(folder, "weights.h5"))
    np.save(os.path.join(folder, "sample.npy"), sample)
    np.save(os.path.join(folder, "theano_prediction.npy"), prediction)
    if built.get("custom_objects"):
        meta["custom_objects"] = os.path.relpath(os.path.join(HERE, "examples", built["custom_objects"]), REPO_ROOT)
    from backends.original_keras.loading import describe_layers
    layers = describe_layers(model)
    meta.update(
        layers=len(layers),
        layer_classes=sorted({layer["class_name"] for layer in layers}),
        parameters=int(sum(np.prod(w.shape) for w in model.get_weights())),
        input_shape=list(sample.shape), input_dtype=str(sample.dtype),
        calibration=calibrations[-1] if len(calibrations) == 1 else calibrations,
        prediction={"shape": list(prediction.shape), "std": round(float(prediction.std()), 5),
                    "max": round(float(prediction.max()), 5), "min": round(float(prediction.min()), 5)},
        build_seconds=round(time.perf_counter() - started, 1),
        files={name: os.path.getsize(os.path.join(folder, name)) for name in
               ("model.json", "weights.h5", "sample.npy", "theano_prediction.npy")})
    _write_meta(folder, meta)
    return {"name": entry.name, "built": True, "layers": meta["layers"], "parameters": meta["parameters"],
            "seconds": meta["build_seconds"], "prediction_std": meta["prediction"]["std"]}


def _write_meta(folder: str, meta: dict) -> None:
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def selected(only, extended: bool, keras_major: int | None = None) -> list[Entry]:
    names = only or [n for n, e in ENTRIES.items() if extended or e.size == "default"]
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        raise SystemExit(f"unknown corpus entries: {', '.join(unknown)} (see --list)")
    return [ENTRIES[n] for n in names if keras_major is None or ENTRIES[n].keras == keras_major]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=default_out(), help="folder of the model folders (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="write only these entries")
    parser.add_argument("--extended", action="store_true", help="also the deep variants (ResNet101/152, ...)")
    parser.add_argument("--list", action="store_true", help="print every entry as JSON lines and exit")
    parser.add_argument("--theano-cache", default=os.path.join(os.path.dirname(default_out()), "theano-compiledir"),
                        help="Theano compile cache (default: kdiff's own, %(default)s)")
    args = parser.parse_args()
    if args.list:
        for entry in ENTRIES.values():
            print(json.dumps({"name": entry.name, "keras": entry.keras, "source": entry.source,
                              "builder": entry.builder, "data_format": entry.data_format, "size": entry.size}))
        return
    sys.path.insert(0, REPO_ROOT)
    from importlib.metadata import version

    from backends.original_keras import compat

    major = int(version("keras").split(".")[0])
    entries = selected(args.only, args.extended, major)
    if not entries:
        return
    compat.configure_theano(args.theano_cache)
    compat.prepare_keras(major)
    import keras

    for entry in entries:
        try:
            written = write(keras, entry, args.out)
        except Exception as exc:  # noqa: BLE001 -- one entry's failure is recorded, the others still written
            written = {"name": entry.name, "built": False, "refusal": f"the generator failed: {type(exc).__name__}: {exc}"}
            _write_meta(os.path.join(args.out, entry.name), {
                "name": entry.name, "source": entry.source, "builder": entry.builder, "data_format": entry.data_format,
                "built": False, "refusal": written["refusal"], "traceback": traceback.format_exc().splitlines()[-8:]})
        print(json.dumps(written), flush=True)


if __name__ == "__main__":
    main()
