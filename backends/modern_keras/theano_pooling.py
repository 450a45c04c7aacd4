"""Pooling with padding='same' as Keras 1.2.2 / 2.3.1 computed it on Theano, as a Keras 3 layer: the fix of
padding-same-asymmetry for a pooling (kdiff/diagnosis/rules/padding_same_asymmetry.py).

Keras's Theano backend (pool2d, pool3d; a 1D pooling is a 2D one of height 1) pads each spatial axis by
p = k - 2 for an odd pool k > 2, else k - 1, on both sides, pools with ignore_border=True (padded cells
are never a maximum and are not counted in an average: 'average_exc_pad'), then keeps the first
ceil(n / s) outputs. TensorFlow's 'same' (and Keras 3's on every backend) puts (out - 1)·s + k - n cells
in all, the odd one after: for a stride-2 pool over an even size, or any even pool, each window starts
elsewhere.

`theano_pooling_class(keras)` is the layer, registered as "kdiff>TheanoSamePooling" so that a model
`kdiff fix` wrote with it loads once backends.modern_keras.extra_layers is imported."""
from __future__ import annotations

import math

_DEFINED: dict = {}


def theano_pad(pool: int) -> int:
    """The padding Keras's Theano backend put on each side of an axis for a 'same' pool of this size (the rule's
    kdiff/diagnosis/rules/padding_same_asymmetry.theano_pool_pad says when the two paddings differ)."""
    return pool - 2 if pool % 2 == 1 and pool > 2 else max(pool - 1, 0)


def theano_pooling_class(keras):
    """The layer class for this Keras 3 module, defined and registered once."""
    if id(keras) not in _DEFINED:
        _DEFINED[id(keras)] = _define(keras)
    return _DEFINED[id(keras)]


def _define(keras):
    ops = keras.ops

    @keras.saving.register_keras_serializable(package="kdiff")
    class TheanoSamePooling(keras.layers.Layer):
        """A 1D/2D/3D max or average pooling with padding='same', as Theano-era Keras padded it."""

        def __init__(self, pool_mode="max", pool_size=(2,), strides=None, data_format="channels_last", **kwargs):
            super().__init__(**kwargs)
            self.pool_mode, self.data_format = pool_mode, data_format
            self.pool_size = tuple(pool_size)
            self.strides = tuple(strides) if strides is not None else self.pool_size

        def call(self, inputs):
            first = self.data_format == "channels_first"
            spatial = list(range(2, len(inputs.shape))) if first else list(range(1, len(inputs.shape) - 1))
            pads = [(0, 0)] * len(inputs.shape)
            for axis, pool in zip(spatial, self.pool_size):
                pads[axis] = (theano_pad(pool),) * 2
            if self.pool_mode == "max":
                pooled = ops.max_pool(ops.pad(inputs, pads, constant_values=-3.0e38), self.pool_size, self.strides,
                                      "valid", self.data_format)  # (a padded cell is never the maximum)
            else:
                def summed(x):  # (each window's mean over the padded input, times the window: its sum)
                    return ops.average_pool(ops.pad(x, pads), self.pool_size, self.strides, "valid", self.data_format)

                pooled = summed(inputs) / summed(ops.ones_like(inputs))
            keep = [slice(None)] * len(inputs.shape)
            for axis, step in zip(spatial, self.strides):
                keep[axis] = slice(0, math.ceil(inputs.shape[axis] / step))
            return pooled[tuple(keep)]

        def compute_output_shape(self, input_shape):
            shape = list(input_shape)
            first = self.data_format == "channels_first"
            spatial = range(2, len(shape)) if first else range(1, len(shape) - 1)
            for axis, step in zip(spatial, self.strides):
                shape[axis] = None if shape[axis] is None else math.ceil(shape[axis] / step)
            return tuple(shape)

        def get_config(self):
            return {**super().get_config(), "pool_mode": self.pool_mode, "pool_size": list(self.pool_size),
                    "strides": list(self.strides), "data_format": self.data_format}

    return TheanoSamePooling
