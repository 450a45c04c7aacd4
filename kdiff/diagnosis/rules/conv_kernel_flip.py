"""Theano's conv2d flips the kernel (true convolution); TensorFlow, JAX and PyTorch compute
cross-correlation. A Theano-era kernel loaded as stored is off by a flip of its spatial axes.

Transposed convolutions flip too (Theano's gradient of its flipping conv; kernel (rows, cols, out, in),
spatial axes first as for the others). Separable and depthwise convolutions do not: Keras 2.3.1's Theano
backend reverses their depthwise kernel before its flipping conv2d, so they load as stored (checked on the
real Keras 2.3.1/Theano file tests/fixtures/k2_more_layers).

A ConvLSTM2D computes two convolutions per step, of its input and of its state, and Keras 2.3.1 on
Theano ran both through the flipping conv2d: its kernel and its recurrent kernel are both flipped
(checked on tests/fixtures/k2_conv_lstm); each alone is a further candidate."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "conv-kernel-flip"
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Conv3DTranspose",
                "Convolution1D", "Convolution2D", "Convolution3D"}


RECURRENT_CONV_CLASSES = {"ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}


def candidates(evidence: LayerEvidence):
    if evidence.class_name in RECURRENT_CONV_CLASSES:
        yield from _recurrent_candidates(evidence)
        return
    kernel = kernel_of(evidence.b_weights)
    if evidence.class_name not in CONV_CLASSES or kernel is None:
        return
    spatial = kernel.ndim - 2  # Keras layout: spatial axes first, then (in, out)
    if all(size == 1 for size in kernel.shape[:spatial]):
        return  # a 1x1 kernel is its own flip
    flipped = kernel[(slice(None, None, -1),) * spatial]
    index = ", ".join(["::-1"] * spatial + [":"] * 2)
    yield Candidate(
        cause=ID,
        b_weights=(flipped, *(w for _, w in evidence.b_weights[1:])),
        fix=(f"Reverse the spatial axes of the kernel of '{evidence.b_layer}': the weights come from Theano, "
             "whose convolution flips the kernel, while this backend does not."),
        code=(f'layer = model.get_layer("{evidence.b_layer}")\n'
              "kernel, *rest = layer.get_weights()\n"
              f"layer.set_weights([kernel[{index}], *rest])"),
    )


def _recurrent_candidates(evidence: LayerEvidence):
    names = [name.rsplit("/", 1)[-1] for name, _ in evidence.b_weights]
    convolved = [i for i, name in enumerate(names) if name in ("kernel", "recurrent_kernel")]
    weights = [w for _, w in evidence.b_weights]
    if not convolved or any(weights[i].ndim < 3 for i in convolved):
        return
    spatial = weights[convolved[0]].ndim - 2
    if all(size == 1 for size in weights[convolved[0]].shape[:spatial]):
        return
    index = ", ".join(["::-1"] * spatial + [":"] * 2)
    for flipped in ([*convolved], *([[i] for i in convolved] if len(convolved) > 1 else [])):
        changed = [w[(slice(None, None, -1),) * spatial] if i in flipped else w for i, w in enumerate(weights)]
        which = " and ".join(f"the {names[i].replace('_', ' ')}" for i in flipped)
        yield Candidate(
            cause=ID,
            b_weights=tuple(changed),
            fix=(f"Reverse the spatial axes of {which} of '{evidence.b_layer}': the weights come from Theano, "
                 "whose convolution (of the input and of the state at every step) flips the kernel, while this "
                 "backend does not."),
            code=(f'layer = model.get_layer("{evidence.b_layer}")\n'
                  "weights = layer.get_weights()\n"
                  + "".join(f"weights[{i}] = weights[{i}][{index}]  # {names[i]}\n" for i in flipped)
                  + "layer.set_weights(weights)"),
        )
