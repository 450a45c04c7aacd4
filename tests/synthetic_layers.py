"""Numpy reference implementations of the layers the diagnosis rules are about, and a stand-in side that
computes with them, for the fast tier (no worker, no framework): a rule's candidate applied through
kdiff.diagnosis.repair._prove really changes what this side computes.

A side follows one framework's conventions where frameworks differ:
- Theano's conv2d flips the kernel (true convolution), the others cross-correlate;
- 'same' padding: TensorFlow pads (out - 1)*s + k - n in total, the odd one after; Theano pads k//2
  before each axis and crops the end;
- hard_sigmoid: clip(0.2x + 0.5, 0, 1) in Keras 1/2 and tf_keras, relu6(x + 3) / 6 in Keras 3.
Everything else (BatchNormalization, LSTM/GRU with reset_after, LeakyReLU, GELU's two forms, a dtype
policy's rounding) is read from the layer's config, as Keras writes it."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdiff.diagnosis.model import LayerEvidence


@dataclass(frozen=True)
class Conventions:
    flips_kernel: bool = False          # Theano: true convolution
    same_padding: str = "tensorflow"    # or "theano": k//2 before each spatial axis
    hard_sigmoid: str = "keras2"        # clip(0.2x + 0.5, 0, 1); "keras3": relu6(x + 3) / 6
    bias_along_width: bool = False      # Keras 3 on TensorFlow: a channels_first conv whose width equals its
    #                                     filters gets its bias along the width (framework-bias-add-axis)
    average_pads_replicated: bool = False  # Keras 3 on torch: an average pooling's uneven 'same' padding holds
    #                                     the edge's values, averaged in (framework-avgpool-same-padding)
    layernorm_trailing: bool = False    # Keras 3 on torch: a LayerNormalization over adjacent non-trailing axes
    #                                     normalises over the trailing axes of their sizes (framework-layernorm-axis)


TENSORFLOW = Conventions()
THEANO = Conventions(flips_kernel=True, same_padding="theano")
THEANO_UNFLIPPED = Conventions(same_padding="theano")  # a Theano file whose kernels were converted, padding not
KERAS3 = Conventions(hard_sigmoid="keras3")
KERAS3_TENSORFLOW = Conventions(hard_sigmoid="keras3", bias_along_width=True)
KERAS3_TORCH = Conventions(hard_sigmoid="keras3", average_pads_replicated=True, layernorm_trailing=True)

ROUND_BFLOAT16 = np.uint32(0x7FFF)


# ---- numbers at a precision -------------------------------------------------------------------
def bfloat16(x) -> np.ndarray:
    """float32 values rounded (to nearest even) to bfloat16's 8 significant bits, kept as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounded = (bits + ROUND_BFLOAT16 + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def policy(config: dict) -> str:
    """The dtype policy a config names (a string, or Keras 3's DTypePolicy dict); float32 when none."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return dtype if isinstance(dtype, str) else "float32"


def at_precision(array, compute: str) -> np.ndarray:
    """The array as a layer computing in ``compute`` sees it: rounded to it (16-bit floats are then held in
    float32, in which the arithmetic is done), or in float32 / float64."""
    array = np.asarray(array)
    if compute == "float64":
        return array.astype(np.float64)
    if compute == "float16":
        return array.astype(np.float16).astype(np.float32)
    if compute == "bfloat16":
        return bfloat16(array.astype(np.float32))
    return array.astype(np.float32)


def output_at_precision(array: np.ndarray, compute: str) -> np.ndarray:
    if compute == "float16":
        return array.astype(np.float16)
    if compute == "bfloat16":
        return bfloat16(array)
    return array.astype(np.float64 if compute == "float64" else np.float32)


# ---- activations ------------------------------------------------------------------------------
_erf = np.vectorize(math.erf, otypes=[np.float64])


def activation_name(value) -> str:
    if isinstance(value, dict):  # Keras 3's serialized function
        value = value.get("config")
    return value or "linear"


def activate(x: np.ndarray, name, conventions: Conventions = TENSORFLOW) -> np.ndarray:
    name = activation_name(name)
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "hard_sigmoid":
        if conventions.hard_sigmoid == "keras3":
            return np.clip(x + 3, 0, 6) / 6
        return np.clip(0.2 * x + 0.5, 0, 1)
    if name == "gelu":  # exact: x·Φ(x)
        return (0.5 * x * (1 + _erf(np.asarray(x, np.float64) / math.sqrt(2)))).astype(x.dtype)
    if name == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(f"no reference implementation of the activation {name!r}")


# ---- layers -----------------------------------------------------------------------------------
def dense(x, kernel, bias=None, activation="linear", conventions=TENSORFLOW):
    y = x @ kernel
    return activate(y if bias is None else y + bias, activation, conventions)


def flatten(x: np.ndarray, order: str = "row_major") -> np.ndarray:
    """Flatten's output. "row_major": the tensor's own order; "channels_last": Keras 2's Flatten on a
    channels_first tensor, which moves the channels last first; "channels_first": the channels (the last
    axis) first."""
    if order == "channels_last":
        x = np.moveaxis(x, 1, -1)
    elif order == "channels_first":
        x = np.moveaxis(x, -1, 1)
    return x.reshape(len(x), -1)


def same_padding_before(kernel: int, stride: int, size: int, rule: str) -> int:
    if rule == "theano":
        return kernel // 2
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def conv(x, kernel, bias=None, *, strides=1, padding="valid", data_format="channels_last", activation="linear",
         conventions=TENSORFLOW, bias_apart=False):
    """Conv1D/2D/3D; the kernel in Keras's layout (spatial axes..., in, out)."""
    spatial = kernel.ndim - 2
    strides = list(strides) if isinstance(strides, (list, tuple)) else [strides] * spatial
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    if conventions.flips_kernel:
        kernel = kernel[(slice(None, None, -1),) * spatial]
    sizes, taps = x.shape[1:-1], kernel.shape[:spatial]
    if padding == "valid":
        outs = [(n - k) // s + 1 for n, k, s in zip(sizes, taps, strides)]
        before = [0] * spatial
    elif padding == "same":
        outs = [-(-n // s) for n, s in zip(sizes, strides)]
        before = [same_padding_before(k, s, n, conventions.same_padding) for k, s, n in zip(taps, strides, sizes)]
    else:
        raise ValueError(f"no reference implementation of padding {padding!r}")
    after = [max((o - 1) * s + k - n - b, 0) for o, s, k, n, b in zip(outs, strides, taps, sizes, before)]
    padded = np.pad(x, [(0, 0), *zip(before, after), (0, 0)])
    y = np.zeros((len(x), *outs, kernel.shape[-1]), np.result_type(x.dtype, kernel.dtype))
    for tap in np.ndindex(*taps):
        window = tuple(slice(t, t + (o - 1) * s + 1, s) for t, o, s in zip(tap, outs, strides))
        y += padded[(slice(None), *window)] @ kernel[tap]
    if bias is not None and conventions.bias_along_width and not bias_apart and data_format == "channels_first" \
            and y.shape[-2] == y.shape[-1]:
        y = y + bias.reshape((1,) * (y.ndim - 2) + (-1, 1))  # along the width (the last axis once moved back)
    elif bias is not None:
        y = y + bias
    y = activate(y, activation, conventions)
    return np.moveaxis(y, -1, 1) if data_format == "channels_first" else y


def average_pool(x, pool_size, strides, padding="valid", data_format="channels_last", replicated=False,
                 theano_same=False, mode="average"):
    """Average (or, with ``mode="max"``, max) pooling over every spatial axis; 'same' pads as TensorFlow does
    (the odd cell after) and pools over the cells inside the input; ``replicated``: where the padding is
    uneven, the input padded with its edge's values and those averaged in (Keras 3's torch backend);
    ``theano_same``: 'same' padded as Keras's Theano backend did (k - 2 for an odd k > 2, else k - 1, on both
    sides), the first ceil(n/s) outputs kept."""
    x = np.asarray(x, np.float64)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    spatial = x.ndim - 2
    pads = [(0, 0)] * x.ndim
    for axis, pool, step in zip(range(1, 1 + spatial), pool_size, strides):
        total = max((-(-x.shape[axis] // step) - 1) * step + pool - x.shape[axis], 0) if padding == "same" else 0
        pads[axis] = (total // 2, total - total // 2)
        if theano_same and padding == "same":
            pads[axis] = (pool - 2 if pool % 2 == 1 and pool > 2 else pool - 1,) * 2
    uneven = any((before + after) % 2 for before, after in pads)
    if replicated and uneven:
        padded, counted = np.pad(x, pads, mode="edge"), np.ones_like(np.pad(x, pads))
    else:
        padded, counted = np.pad(x, pads), np.pad(np.ones_like(x), pads)
    windows = lambda a: np.lib.stride_tricks.sliding_window_view(a, tuple(pool_size), axis=tuple(range(1, 1 + spatial)))
    steps = (slice(None),) + tuple(slice(None, None, step) for step in strides)
    if mode == "max":
        masked = np.where(np.pad(np.ones_like(x), pads) > 0, padded, -np.inf)
        y = windows(masked)[steps].max(axis=tuple(range(-spatial, 0)))
    else:
        total = windows(padded)[steps].sum(axis=tuple(range(-spatial, 0)))
        y = total / windows(counted)[steps].sum(axis=tuple(range(-spatial, 0)))
    if padding == "same":
        y = y[(slice(None),) + tuple(slice(0, -(-n // step)) for n, step in zip(x.shape[1:-1], strides))]
    y = y.astype(np.float32)
    return np.moveaxis(y, -1, 1) if data_format == "channels_first" else y


def batch_normalization(x, gamma, beta, moving_mean, moving_variance, *, epsilon=1e-3, axis=-1, training=False):
    axis = axis[0] if isinstance(axis, (list, tuple)) else axis
    axis %= x.ndim
    reduced = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    if training:  # each batch's own statistics (the biased variance, as Keras)
        mean, variance = x.mean(axis=reduced), x.var(axis=reduced)
    else:
        mean, variance = moving_mean, moving_variance
    mean, variance = mean.reshape(shape), variance.reshape(shape)
    return (x - mean) / np.sqrt(variance + x.dtype.type(epsilon)) * gamma.reshape(shape) + beta.reshape(shape)


def leaky_relu(x, slope):
    return np.where(x >= 0, x, x.dtype.type(slope) * x)


def lstm(x, kernel, recurrent_kernel, bias=None, *, activation="tanh", recurrent_activation="sigmoid",
         return_sequences=False, conventions=TENSORFLOW):
    """Keras's LSTM: gate blocks [i, f, c, o] along the weights' last axis."""
    units = recurrent_kernel.shape[0]
    h = np.zeros((len(x), units), x.dtype)
    c = np.zeros_like(h)
    sequence = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel
        if bias is not None:
            z = z + bias
        i, f, candidate, o = np.split(z, 4, axis=-1)
        i, f, o = (activate(g, recurrent_activation, conventions) for g in (i, f, o))
        c = f * c + i * activate(candidate, activation, conventions)
        h = o * activate(c, activation, conventions)
        sequence.append(h)
    return np.stack(sequence, axis=1) if return_sequences else h


def gru(x, kernel, recurrent_kernel, bias=None, *, reset_after=True, activation="tanh",
        recurrent_activation="sigmoid", return_sequences=False, conventions=TENSORFLOW):
    """Keras's GRU: gate blocks [z, r, h]; reset_after=True applies the reset gate after the recurrent kernel
    (bias (2, 3u): an input row, a recurrent row), False before it (bias (3u,))."""
    units = recurrent_kernel.shape[0]
    if bias is not None and bias.ndim != (2 if reset_after else 1):
        raise ValueError(f"a GRU with reset_after={reset_after} has no bias of shape {bias.shape}")
    input_bias = recurrent_bias = 0
    if bias is not None:
        input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, 0)
    h = np.zeros((len(x), units), x.dtype)
    sequence = []
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + input_bias, 3, axis=-1)
        if reset_after:
            rz, rr, rh = np.split(h @ recurrent_kernel + recurrent_bias, 3, axis=-1)
            z = activate(xz + rz, recurrent_activation, conventions)
            r = activate(xr + rr, recurrent_activation, conventions)
            hh = activate(xh + r * rh, activation, conventions)
        else:
            uz, ur, uh = np.split(recurrent_kernel, 3, axis=-1)
            z = activate(xz + h @ uz, recurrent_activation, conventions)
            r = activate(xr + h @ ur, recurrent_activation, conventions)
            hh = activate(xh + (r * h) @ uh, activation, conventions)
        h = z * h + (1 - z) * hh
        sequence.append(h)
    return np.stack(sequence, axis=1) if return_sequences else h


CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D"}


def forward(class_name: str, config: dict, weights: list, inputs: list, training: bool | None = None,
            conventions: Conventions = TENSORFLOW) -> list[np.ndarray]:
    """One layer's outputs, computed as its config and the side's conventions say."""
    compute = policy(config).removeprefix("mixed_")
    xs = [at_precision(x, compute) for x in inputs]
    ws = [at_precision(w, compute) for w in weights]
    x = xs[0]
    if class_name == "Dense":
        y = dense(x, ws[0], ws[1] if config.get("use_bias", True) else None, config.get("activation", "linear"),
                  conventions)
    elif class_name in CONV_CLASSES:
        spatial = ws[0].ndim - 2
        kernel_size = config.get("kernel_size")
        if kernel_size is not None and tuple(kernel_size) != ws[0].shape[:spatial]:
            raise ValueError(f"kernel_size {kernel_size} holds no kernel of shape {ws[0].shape}")
        y = conv(x, ws[0], ws[1] if config.get("use_bias", True) else None, strides=config.get("strides", 1),
                 padding=config.get("padding", "valid"), data_format=config.get("data_format", "channels_last"),
                 activation=config.get("activation", "linear"), conventions=conventions,
                 bias_apart=bool(config.get("kdiff:bias_added_apart")))
    elif class_name in ("AveragePooling1D", "AveragePooling2D", "MaxPooling1D", "MaxPooling2D"):
        pool_size = tuple(config["pool_size"])
        y = average_pool(x, pool_size, tuple(config.get("strides") or pool_size), config.get("padding", "valid"),
                         config.get("data_format", "channels_last"), conventions.average_pads_replicated
                         and not config.get("kdiff:average_counted_apart"),
                         theano_same=conventions.same_padding == "theano" or bool(config.get("kdiff:theano_same_pooling")),
                         mode="max" if class_name.startswith("Max") else "average")
    elif class_name == "LayerNormalization":
        axes = sorted(a % x.ndim for a in (config.get("axis", -1) if isinstance(config.get("axis", -1), list)
                                           else [config.get("axis", -1)]))
        if conventions.layernorm_trailing and not config.get("kdiff:normalized_apart"):
            axes = list(range(x.ndim - len(axes), x.ndim))  # torch's F.layer_norm: the trailing axes
        x64 = np.asarray(x, np.float64)
        y = (x64 - x64.mean(axis=tuple(axes), keepdims=True)) / np.sqrt(
            x64.var(axis=tuple(axes), keepdims=True) + config.get("epsilon", 1e-3))
        shape = [x.shape[d] if d in sorted(a % x.ndim for a in np.atleast_1d(config.get("axis", -1))) else 1
                 for d in range(x.ndim)]
        y = (y * ws[0].reshape(shape) + ws[1].reshape(shape)).astype(np.float32)
    elif class_name == "BatchNormalization":
        y = batch_normalization(x, *ws, epsilon=config.get("epsilon", 1e-3), axis=config.get("axis", -1),
                                training=bool(training))
    elif class_name == "LeakyReLU":
        y = leaky_relu(x, config.get("negative_slope", config.get("alpha", 0.3)))
    elif class_name == "LSTM":
        y = lstm(x, *ws, activation=config.get("activation", "tanh"),
                 recurrent_activation=config.get("recurrent_activation", "sigmoid"),
                 return_sequences=config.get("return_sequences", False), conventions=conventions)
    elif class_name == "GRU":
        y = gru(x, *ws, reset_after=config.get("reset_after", False), activation=config.get("activation", "tanh"),
                recurrent_activation=config.get("recurrent_activation", "sigmoid"),
                return_sequences=config.get("return_sequences", False), conventions=conventions)
    else:
        raise ValueError(f"no reference implementation of {class_name}")
    return [output_at_precision(y, compute)]


# ---- the stand-in side ------------------------------------------------------------------------
class SyntheticSide:
    """One side holding one layer, answering the calls the repair makes of a worker (run_layer,
    run_layer_changed, change_layer, set_weights, weights, layer_config), computed with the reference
    implementations above. ``training``: how the model calls the layer (None: at inference); ``unwritten``:
    settings it computes with that its layer_config leaves out (Keras 1's GRU has no reset_after, PyTorch's
    LeakyReLU config no Keras slope)."""

    def __init__(self, name: str, class_name: str, config: dict, weights: list[tuple[str, np.ndarray]],
                 conventions: Conventions = TENSORFLOW, training: bool | None = None, unwritten: tuple = ()):
        self.name, self.class_name, self.conventions, self.training = name, class_name, conventions, training
        self.config = dict(config)
        self.unwritten = tuple(unwritten)  # settings its framework computes with but leaves out of the config
        self.names = [weight_name for weight_name, _ in weights]
        self.arrays = [np.array(array) for _, array in weights]
        self.calls: list[str] = []

    def _check(self, layer: str) -> None:
        if layer != self.name:
            raise KeyError(f"side has no layer {layer!r} (only {self.name!r})")

    def run_layer(self, layer, inputs):
        self._check(layer)
        self.calls.append("run_layer")
        return forward(self.class_name, self.config, self.arrays, list(inputs), self.training, self.conventions)

    def run_layer_changed(self, layer, inputs, overrides, training, weights=None):
        self._check(layer)
        self.calls.append("run_layer_changed")
        arrays = self.arrays if weights is None else [np.asarray(w) for w in weights]
        return forward(self.class_name, {**self.config, **overrides}, arrays, list(inputs),
                       self.training if training is None else training, self.conventions)

    def change_layer(self, layer, overrides, training, weights=None):
        self._check(layer)
        self.calls.append("change_layer")
        self.config.update(overrides)
        if training is not None:
            self.training = training
        if weights is not None:
            self.arrays = [np.array(w) for w in weights]

    def set_weights(self, layer, arrays):
        self._check(layer)
        self.calls.append("set_weights")
        arrays = [np.asarray(a) for a in arrays]
        if [a.shape for a in arrays] != [a.shape for a in self.arrays]:  # as Keras refuses
            raise ValueError(f"weights of shapes {[a.shape for a in arrays]} for a layer holding "
                             f"{[a.shape for a in self.arrays]}")
        self.arrays = [a.astype(old.dtype) for a, old in zip(arrays, self.arrays)]

    def weights(self, layer):
        self._check(layer)
        return list(zip(self.names, (np.array(a) for a in self.arrays)))

    def layer_config(self, layer):
        self._check(layer)
        return {key: value for key, value in self.config.items() if key not in self.unwritten}


def evidence_of(a: SyntheticSide, b: SyntheticSide, inputs: list[np.ndarray], *, feeding_classes=("input",),
                input_shapes=None, feeding_input_shapes=(), b_backend="", b_versions=None) -> LayerEvidence:
    """What kdiff.diagnosis.evidence.gather collects, from two stand-in sides: side A's outputs of its layer
    on ``inputs``, both sides' weights and configs."""
    return LayerEvidence(
        layer=a.name, b_layer=b.name, class_name=b.class_name,
        a_inputs=tuple(inputs), a_outputs=tuple(a.run_layer(a.name, inputs)),
        b_weights=tuple(b.weights(b.name)), a_weights=tuple(a.weights(a.name)),
        input_shapes=tuple(input_shapes) if input_shapes is not None else
        tuple((None, *x.shape[1:]) for x in inputs),
        feeding_classes=tuple(feeding_classes), feeding_input_shapes=tuple(feeding_input_shapes),
        a_config=a.layer_config(a.name), b_config=b.layer_config(b.name),
        b_backend=b_backend, b_versions=dict(b_versions or {}),
    )
