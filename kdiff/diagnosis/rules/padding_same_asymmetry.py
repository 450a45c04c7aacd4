"""padding='same' is not the same padding everywhere. Theano (Keras 1/2 on Theano) pads a
convolution symmetrically, k//2 before each spatial axis, and crops the end; TensorFlow (and
Keras 3 on JAX and PyTorch, and tf_keras) pads (out - 1)*s + k - n in total and puts the odd one
after. They agree only for odd kernels at stride 1 (or stride 2 on odd sizes); otherwise the
output is the other's shifted by a pixel.

The fix keeps one plain layer: a larger kernel holding the original at an offset, zeros around
it, makes TensorFlow's rule start each window where Theano's did (the extra taps read only
padding or are zero). Proven, as every rule, by re-running side B's layer so changed on side A's
inputs.

A pooling with padding='same' differs the same way: Keras's Theano backend padded each axis by k - 2
(odd k > 2) or k - 1 on both sides, pooled, and kept the first ceil(n/s) outputs (padded cells never
count), so a stride-2 pool over an even size, or an even pool, starts its windows elsewhere. No plain
Keras 3 layer pools so; the fix is kdiff's layer that does (backends/modern_keras/theano_pooling.py,
"kdiff>TheanoSamePooling"), in the pooling's place."""
from __future__ import annotations

import math

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "padding-same-asymmetry"
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"}


PADDING_CLASSES = {"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"}
MAX_PADDINGS = 64


POOL_CLASSES = {f"{kind}Pooling{rank}D" for kind in ("Max", "Average") for rank in (1, 2, 3)}
THEANO_POOLING = "kdiff:theano_same_pooling"  # understood by the Keras 3 workers (backends/modern_keras/layer_changes.py)


def candidates(evidence: LayerEvidence):
    yield from _moved_padding(evidence)
    yield from _theano_pooling(evidence)
    config = evidence.b_config
    kernel = kernel_of(evidence.b_weights)
    if evidence.class_name not in CONV_CLASSES or kernel is None or config.get("padding") != "same":
        return
    spatial = kernel.ndim - 2
    strides = _per_axis(config.get("strides", 1), spatial)
    if any(d != 1 for d in _per_axis(config.get("dilation_rate", 1), spatial)) or not evidence.a_inputs:
        return
    sizes = _spatial_sizes(evidence, spatial)
    if sizes is None:
        return
    placements = [_placement(k, s, n) for k, s, n in zip(kernel.shape[:spatial], strides, sizes)]
    if any(p is None for p in placements) or all(p == (k, 0) for p, k in zip(placements, kernel.shape)):
        return  # the two rules already agree on every axis, or no kernel size can make them agree
    grown = np.zeros(tuple(size for size, _ in placements) + kernel.shape[spatial:], kernel.dtype)
    where = tuple(slice(offset, offset + k) for (_, offset), k in zip(placements, kernel.shape))
    grown[where] = kernel
    sizes_text = ", ".join(str(size) for size, _ in placements) + ("," if spatial == 1 else "")
    index = ", ".join(f"{offset}:{offset + k}" for (_, offset), k in zip(placements, kernel.shape)) + ", :, :"
    yield Candidate(
        cause=ID,
        b_weights=(grown, *(w for _, w in evidence.b_weights[1:])),
        overrides={"kernel_size": [size for size, _ in placements]},
        fix=(f"'{evidence.b_layer}' pads 'same' the TensorFlow way (the odd row/column after), while its weights "
             f"were made for Theano's symmetric padding (k//2 before each axis, at strides {tuple(strides)}): "
             f"give it kernel_size ({sizes_text}) holding the kernel at [{index}] with zeros around it, which "
             "starts every window where Theano's did."),
        code=("import numpy as np\n"
              f'old = model.get_layer("{evidence.b_layer}")\n'
              "kernel, *rest = old.get_weights()\n"
              f"grown = np.zeros(({sizes_text}) + kernel.shape[{spatial}:], kernel.dtype)\n"
              f"grown[{index}] = kernel\n"
              f"new = type(old).from_config({{**old.get_config(), \"kernel_size\": ({sizes_text})}})\n"
              "# call `new` where the model called `old` (rebuild the functional graph), then:\n"
              "new.set_weights([grown, *rest])"),
    )


def _per_axis(value, count: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def _spatial_sizes(evidence: LayerEvidence, spatial: int) -> list[int] | None:
    """The input's size along each spatial axis, in the layout side A's tensors have."""
    shape = evidence.a_inputs[0].shape
    if len(shape) != spatial + 2:
        return None
    layout = evidence.a_config.get("data_format") or evidence.b_config.get("data_format") or "channels_last"
    return list(shape[2:] if layout == "channels_first" else shape[1:-1])


def _tensorflow_before(kernel: int, stride: int, size: int) -> int:
    """Padding TensorFlow's 'same' puts before an axis."""
    out = math.ceil(size / stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def _placement(kernel: int, stride: int, size: int) -> tuple[int, int] | None:
    """(kernel size, offset of the original kernel in it) with which TensorFlow's 'same' reads what
    Theano's symmetric 'same' read: windows starting kernel//2 before each output position."""
    theano_before = kernel // 2
    for grown in range(kernel, 4 * kernel + 2 * stride + 2):
        offset = _tensorflow_before(grown, stride, size) - theano_before
        if offset >= 0 and offset + kernel <= grown:
            return grown, offset
    return None


def _moved_padding(evidence: LayerEvidence):
    """Side B pads in a layer of its own before a 'valid' conv (a port writing 'same' as Theano's or
    PyTorch's symmetric padding), side A's conv pads itself: each other split of the padding that
    gives side A's output size, on the padding layer."""
    if len(evidence.b_chain) != 2 or not evidence.b_group or evidence.b_chain[1] != evidence.b_layer:
        return
    pad_name, pad_class, pad_config = evidence.b_group[0]
    config, kernel = evidence.b_config, kernel_of(evidence.b_weights)
    if pad_class not in PADDING_CLASSES or evidence.class_name not in CONV_CLASSES or kernel is None \
            or config.get("padding") != "valid" or not evidence.a_inputs or not evidence.a_outputs:
        return
    spatial = kernel.ndim - 2
    strides = _per_axis(config.get("strides", 1), spatial)
    dilations = _per_axis(config.get("dilation_rate", 1), spatial)
    layout = config.get("data_format") or "channels_last"
    axes = slice(2, None) if layout == "channels_first" else slice(1, -1)
    sizes, wanted = evidence.a_inputs[0].shape[axes], evidence.a_outputs[0].shape[axes]
    if len(sizes) != spatial or len(wanted) != spatial:
        return
    current = _pairs(pad_config.get("padding"), spatial)
    per_axis = []
    for k, s, d, n, out in zip(kernel.shape[:spatial], strides, dilations, sizes, wanted):
        reach = (k - 1) * d + 1
        per_axis.append([(before, total - before) for total in range(0, 2 * reach + s)
                         if (n + total - reach) // s + 1 == out for before in range(total + 1)])
    options = [()]
    for axis_options in per_axis:
        options = [(*chosen, option) for chosen in options for option in axis_options]
        if len(options) > MAX_PADDINGS:
            return
    for option in options:
        if list(option) == current:
            continue
        text = "(" + ", ".join(f"({b}, {a})" for b, a in option) + ("," if spatial == 1 else "") + ")"
        value = [list(o) for o in option] if spatial > 1 else list(option[0])
        yield Candidate(
            cause=ID, layer=pad_name, overrides={"padding": value},
            fix=(f"'{pad_name}' pads {_text(current)} before the 'valid' '{evidence.b_layer}', but side A's "
                 f"'{evidence.layer}' pads as {text}: each window then starts where side A's did. Set the "
                 f"padding of '{pad_name}' to {text}."),
            code=(f'model.get_layer("{pad_name}").padding = {text}  # read at every call, and saved'),
        )


def _pairs(padding, spatial: int) -> list:
    """A ZeroPadding layer's padding as one (before, after) per spatial axis."""
    if isinstance(padding, int):
        return [(padding, padding)] * spatial
    if spatial == 1 and isinstance(padding, (list, tuple)) and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    if isinstance(padding, (list, tuple)) and len(padding) == spatial:
        return [tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in padding]
    return []


def _text(pairs: list) -> str:
    return "(" + ", ".join(f"({b}, {a})" for b, a in pairs) + ")" if pairs else "as configured"


def theano_pool_pad(pool: int) -> int:
    """What Keras's Theano backend padded on each side of an axis for a 'same' pool (see the module's text; the
    worker's layer computes the same: backends/modern_keras/theano_pooling.theano_pad, which the coordinator
    does not import)."""
    return pool - 2 if pool % 2 == 1 and pool > 2 else max(pool - 1, 0)


def _theano_pooling(evidence: LayerEvidence):
    """A 'same' pooling on side B whose windows start elsewhere than Theano-era Keras's on some axis."""
    config = evidence.b_config
    if evidence.class_name not in POOL_CLASSES or config.get("padding") != "same" or not evidence.a_inputs \
            or evidence.b_backend.startswith(("theano", "tf-keras")):
        return
    spatial = int(evidence.class_name[-2])
    pools = _per_axis(config.get("pool_size", 2), spatial)
    strides = _per_axis(config.get("strides") or pools, spatial)
    sizes = _spatial_sizes(evidence, spatial)
    if sizes is None or all(theano_pool_pad(k) == _tensorflow_before(k, s, n) for k, s, n in zip(pools, strides, sizes)):
        return
    pads = ", ".join(str(theano_pool_pad(k)) for k in pools)
    yield Candidate(
        cause=ID, overrides={THEANO_POOLING: True},
        fix=(f"'{evidence.b_layer}' pools with padding='same' the TensorFlow way (the odd cell after), while "
             f"Theano-era Keras padded ({pads}) cells on both sides of each axis and kept the first outputs: "
             f"its windows start elsewhere on this {'x'.join(map(str, sizes))} input. Pool as Theano did: kdiff's "
             "TheanoSamePooling layer in its place (a written model holds it as 'kdiff>TheanoSamePooling'; "
             "import backends.modern_keras.extra_layers before loading it)."),
        code=("from backends.modern_keras.theano_pooling import theano_pooling_class\n"
              f'old = model.get_layer("{evidence.b_layer}")\n'
              "new = theano_pooling_class(keras)(pool_mode=old.pool_mode, pool_size=old.pool_size,\n"
              "                                  strides=old.strides, data_format=old.data_format, name=old.name)\n"
              "# call `new` where the model called `old` (rebuild the functional graph)"),
    )
