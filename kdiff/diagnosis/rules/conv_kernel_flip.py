"""Theano's conv2d flips the kernel (true convolution); TensorFlow, JAX and PyTorch compute
cross-correlation. A Theano-era kernel loaded as stored is off by a flip of its spatial axes.

Transposed convolutions flip too (Theano's gradient of its flipping conv; kernel (rows, cols, out, in),
spatial axes first as for the others). Separable and depthwise convolutions do not: Keras 2.3.1's Theano
backend reverses their depthwise kernel before its flipping conv2d, so they load as stored (checked on the
real Keras 2.3.1/Theano file tests/fixtures/k2_more_layers)."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of

ID = "conv-kernel-flip"
CONV_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Conv3DTranspose",
                "Convolution1D", "Convolution2D", "Convolution3D"}


def candidates(evidence: LayerEvidence):
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
