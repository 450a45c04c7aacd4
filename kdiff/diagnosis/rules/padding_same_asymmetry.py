"""padding='same' is not the same padding everywhere. Theano (Keras 1/2 on Theano) pads a
convolution symmetrically, k//2 before each spatial axis, and crops the end; TensorFlow (and
Keras 3 on JAX and PyTorch, and tf_keras) pads (out - 1)*s + k - n in total and puts the odd one
after. They agree only for odd kernels at stride 1 (or stride 2 on odd sizes); otherwise the
output is the other's shifted by a pixel.

The fix keeps one plain layer: a larger kernel holding the original at an offset, zeros around
it, makes TensorFlow's rule start each window where Theano's did (the extra taps read only
padding or are zero). Proven, as every rule, by re-running side B's layer so changed on side A's
inputs."""
from __future__ import annotations

import math

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "padding-same-asymmetry"
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"}


def candidates(evidence: LayerEvidence):
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
