"""Keras 1/2 layers that Keras 3 no longer has, rebuilt to compute what Keras 1.2.2 / 2.3.1 computed
(layer_catalog.KDIFF_EXTRA_LAYERS): LocallyConnected1D/2D, Highway, MaxoutDense, SReLU, ParametricSoftplus,
ThresholdedReLU. Their weights are the old layers' own, in the old order and shapes, so a Keras 1/2 file's
weights load as stored.

`layer_classes(keras)` defines them for one Keras module (Keras 3 on any backend, or tf_keras) and
registers them as serializable under the package "kdiff" (class names "kdiff>Highway", ...), so that a
model kdiff wrote (`kdiff fix`) loads again once they are defined: `import backends.modern_keras.extra_layers`
before `keras.saving.load_model(...)` (see that module).
"""
from __future__ import annotations

_DEFINED: dict = {}   # id(keras module) -> {class name: class}


def layer_classes(keras) -> dict:
    """{class name: class} of kdiff's layers for this Keras module, defined and registered once."""
    key = id(keras)
    if key not in _DEFINED:
        _DEFINED[key] = _define(keras)
    return _DEFINED[key]


class _TFOps:
    """The few keras.ops functions these layers use, for tf_keras (which has no keras.ops)."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def __getattr__(self, name):
        tf = self.tf
        table = {"reshape": tf.reshape, "einsum": tf.einsum, "sigmoid": tf.sigmoid, "matmul": tf.matmul,
                 "abs": tf.abs, "minimum": tf.minimum, "cast": tf.cast, "greater": tf.greater,
                 "softplus": tf.nn.softplus, "stack": lambda xs, axis=0: tf.stack(xs, axis=axis),
                 "transpose": lambda x, axes: tf.transpose(x, axes),
                 "max": lambda x, axis: tf.reduce_max(x, axis=axis)}
        return table[name]


def _tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def _define(keras) -> dict:
    ops = keras.ops if hasattr(keras, "ops") else _TFOps()
    register = (keras.saving.register_keras_serializable if hasattr(keras, "saving")
                and hasattr(keras.saving, "register_keras_serializable")
                else keras.utils.register_keras_serializable)

    def param_shape(input_shape, shared_axes):
        shape = list(input_shape[1:])
        for axis in shared_axes or ():
            shape[axis - 1] = 1
        return tuple(shape)

    def shared(value):
        if value is None or value == [None]:
            return None
        return list(value) if isinstance(value, (list, tuple)) else [value]

    @register(package="kdiff")
    class ThresholdedReLU(keras.layers.Layer):
        """Keras 1/2: x where x > theta, else 0."""

        def __init__(self, theta=1.0, **kwargs):
            super().__init__(**kwargs)
            self.theta = float(theta)
            self.supports_masking = True

        def call(self, inputs):
            return inputs * ops.cast(ops.greater(inputs, self.theta), inputs.dtype)

        def get_config(self):
            return {**super().get_config(), "theta": self.theta}

    @register(package="kdiff")
    class SReLU(keras.layers.Layer):
        """Keras 1's S-shaped ReLU: weights t_left, a_left, t_right, a_right (per element of the input,
        one along each shared axis); t_right acts as t_left + |t_right|."""

        def __init__(self, shared_axes=None, **kwargs):
            super().__init__(**kwargs)
            self.shared_axes = shared(shared_axes)
            self.supports_masking = True

        def build(self, input_shape):
            shape = param_shape(input_shape, self.shared_axes)
            self.t_left, self.a_left, self.t_right, self.a_right = (
                self.add_weight(name=name, shape=shape, initializer=init)
                for name, init in (("t_left", "zeros"), ("a_left", "zeros"), ("t_right", "ones"), ("a_right", "ones")))
            self.built = True

        def call(self, inputs):
            t_right = self.t_left + ops.abs(self.t_right)
            z = inputs - self.t_left
            # Theano's relu(z, alpha): 0.5(1 + alpha)·z + 0.5(1 - alpha)·|z|, then at most max_value
            leaky = 0.5 * (1.0 + self.a_left) * z + 0.5 * (1.0 - self.a_left) * ops.abs(z)
            left_and_center = self.t_left + ops.minimum(leaky, t_right - self.t_left)
            right = inputs - t_right
            return left_and_center + 0.5 * (right + ops.abs(right)) * self.a_right

        def get_config(self):
            return {**super().get_config(), "shared_axes": self.shared_axes}

    @register(package="kdiff")
    class ParametricSoftplus(keras.layers.Layer):
        """Keras 1: alphas · softplus(betas · x); weights alphas, betas."""

        def __init__(self, shared_axes=None, **kwargs):
            super().__init__(**kwargs)
            self.shared_axes = shared(shared_axes)
            self.supports_masking = True

        def build(self, input_shape):
            shape = param_shape(input_shape, self.shared_axes)
            self.alphas = self.add_weight(name="alphas", shape=shape, initializer="ones")
            self.betas = self.add_weight(name="betas", shape=shape, initializer="ones")
            self.built = True

        def call(self, inputs):
            return ops.softplus(self.betas * inputs) * self.alphas

        def get_config(self):
            return {**super().get_config(), "shared_axes": self.shared_axes}

    @register(package="kdiff")
    class Highway(keras.layers.Layer):
        """Keras 1/2 Highway: t = sigmoid(x·W_carry + b_carry); t·act(x·W + b) + (1 - t)·x.
        Weights W, W_carry, b, b_carry."""

        def __init__(self, activation="linear", use_bias=True, **kwargs):
            super().__init__(**kwargs)
            self.activation = keras.activations.get(activation)
            self.use_bias = bool(use_bias)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.W = self.add_weight(name="W", shape=(dim, dim), initializer="glorot_uniform")
            self.W_carry = self.add_weight(name="W_carry", shape=(dim, dim), initializer="glorot_uniform")
            if self.use_bias:
                self.b = self.add_weight(name="b", shape=(dim,), initializer="zeros")
                self.b_carry = self.add_weight(name="b_carry", shape=(dim,), initializer="ones")
            self.built = True

        def call(self, inputs):
            carry = ops.matmul(inputs, self.W_carry)
            value = ops.matmul(inputs, self.W)
            if self.use_bias:
                carry, value = carry + self.b_carry, value + self.b
            transform = ops.sigmoid(carry)
            return self.activation(value) * transform + (1.0 - transform) * inputs

        def get_config(self):
            return {**super().get_config(), "activation": keras.activations.serialize(self.activation),
                    "use_bias": self.use_bias}

    @register(package="kdiff")
    class MaxoutDense(keras.layers.Layer):
        """Keras 1/2 MaxoutDense: the largest of nb_feature Dense layers; W (nb_feature, in, units),
        b (nb_feature, units)."""

        def __init__(self, units, nb_feature=4, use_bias=True, **kwargs):
            super().__init__(**kwargs)
            self.units, self.nb_feature, self.use_bias = int(units), int(nb_feature), bool(use_bias)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.W = self.add_weight(name="W", shape=(self.nb_feature, dim, self.units), initializer="glorot_uniform")
            if self.use_bias:
                self.b = self.add_weight(name="b", shape=(self.nb_feature, self.units), initializer="zeros")
            self.built = True

        def call(self, inputs):
            output = ops.einsum("bi,fiu->bfu", inputs, self.W)
            if self.use_bias:
                output = output + self.b
            return ops.max(output, axis=1)

        def get_config(self):
            return {**super().get_config(), "units": self.units, "nb_feature": self.nb_feature,
                    "use_bias": self.use_bias}

    class _LocallyConnected(keras.layers.Layer):
        rank = 1

        def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format="channels_last",
                     activation=None, use_bias=True, **kwargs):
            super().__init__(**kwargs)
            if padding != "valid":
                raise ValueError(f"{type(self).__name__} supports only padding='valid', not {padding!r}")
            self.filters = int(filters)
            self.kernel_size = _tuple(kernel_size, self.rank)
            self.strides = _tuple(strides, self.rank)
            self.padding = padding
            self.data_format = data_format or "channels_last"
            self.activation = keras.activations.get(activation)
            self.use_bias = bool(use_bias)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                    "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                    "activation": keras.activations.serialize(self.activation), "use_bias": self.use_bias}

    @register(package="kdiff")
    class LocallyConnected1D(_LocallyConnected):
        """Keras 1/2 LocallyConnected1D ('valid'): kernel (steps, k·channels, filters), bias (steps, filters);
        each window flattened (k, channels)."""
        rank = 1

        def build(self, input_shape):
            length, channels = int(input_shape[1]), int(input_shape[2])
            self.steps = (length - self.kernel_size[0]) // self.strides[0] + 1
            self.kernel = self.add_weight(name="kernel", shape=(self.steps, self.kernel_size[0] * channels,
                                                                self.filters), initializer="glorot_uniform")
            if self.use_bias:
                self.bias = self.add_weight(name="bias", shape=(self.steps, self.filters), initializer="zeros")
            self.built = True

        def call(self, inputs):
            k, s = self.kernel_size[0], self.strides[0]
            windows = ops.stack([ops.reshape(inputs[:, i * s:i * s + k, :], (-1, self.kernel.shape[1]))
                                 for i in range(self.steps)], axis=0)
            output = ops.einsum("pbf,pfo->bpo", windows, self.kernel)
            if self.use_bias:
                output = output + self.bias
            return self.activation(output)

    @register(package="kdiff")
    class LocallyConnected2D(_LocallyConnected):
        """Keras 1/2 LocallyConnected2D ('valid'): kernel (rows·cols, kh·kw·channels, filters), each window
        flattened in the input's memory order ((kh, kw, channels), channels_first (channels, kh, kw));
        bias (rows, cols, filters), which a channels_first layer adds reshaped (not transposed) to
        (filters, rows, cols), as Keras 1/2 did."""
        rank = 2

        def build(self, input_shape):
            first = self.data_format == "channels_first"
            rows, cols = (input_shape[2], input_shape[3]) if first else (input_shape[1], input_shape[2])
            channels = int(input_shape[1] if first else input_shape[3])
            self.rows = (int(rows) - self.kernel_size[0]) // self.strides[0] + 1
            self.cols = (int(cols) - self.kernel_size[1]) // self.strides[1] + 1
            self.kernel = self.add_weight(
                name="kernel", shape=(self.rows * self.cols, self.kernel_size[0] * self.kernel_size[1] * channels,
                                      self.filters), initializer="glorot_uniform")
            if self.use_bias:
                self.bias = self.add_weight(name="bias", shape=(self.rows, self.cols, self.filters),
                                            initializer="zeros")
            self.built = True

        def call(self, inputs):
            (kh, kw), (sh, sw) = self.kernel_size, self.strides
            features = self.kernel.shape[1]
            first = self.data_format == "channels_first"
            windows = []
            for i in range(self.rows):
                for j in range(self.cols):
                    window = (inputs[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] if first
                              else inputs[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :])
                    windows.append(ops.reshape(window, (-1, features)))
            output = ops.einsum("pbf,pfo->bpo", ops.stack(windows, axis=0), self.kernel)
            output = ops.reshape(output, (-1, self.rows, self.cols, self.filters))
            if first:
                output = ops.transpose(output, (0, 3, 1, 2))
                if self.use_bias:
                    output = output + ops.reshape(self.bias, (1, self.filters, self.rows, self.cols))
            elif self.use_bias:
                output = output + self.bias
            return self.activation(output)

    return {cls.__name__: cls for cls in (ThresholdedReLU, SReLU, ParametricSoftplus, Highway, MaxoutDense,
                                         LocallyConnected1D, LocallyConnected2D)}
