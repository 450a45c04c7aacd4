"""--custom-objects file for the antirectifier example: its Antirectifier layer (examples/antirectifier.py of
Keras 2.3.1) written against whichever Keras loads it, Keras 2.3.1 on Theano (keras.backend) or Keras 3
(keras.ops). MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""
import keras

ops = getattr(keras, "ops", None) or keras.backend


class Antirectifier(keras.layers.Layer):
    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        assert len(shape) == 2  # only valid for 2D tensors
        shape[-1] *= 2
        return tuple(shape)

    def call(self, inputs):
        inputs = inputs - ops.mean(inputs, axis=1, keepdims=True)
        # K.l2_normalize of Keras 2.3.1's Theano backend, spelled out (Keras 3 has no l2_normalize op)
        inputs = inputs / ops.sqrt(ops.maximum(ops.sum(ops.square(inputs), axis=1, keepdims=True), 1e-7))
        pos = ops.relu(inputs)
        neg = ops.relu(-inputs)
        return ops.concatenate([pos, neg], axis=1)
