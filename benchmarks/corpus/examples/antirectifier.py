"""Keras 2.3.1 examples/antirectifier.py: the custom layer Antirectifier and the model as written (data
loading, compile, fit and the ReLU comparison removed). kdiff loads the file with antirectifier_objects.py
(--custom-objects), the same layer written so that it runs on Keras 2.3.1 and on Keras 3. MIT licensed, Copyright (c) 2015-2019 François Chollet and the Keras contributors: LICENSE-keras."""


def build(keras, data_format):
    from keras.models import Sequential
    from keras import layers
    from keras import backend as K

    class Antirectifier(layers.Layer):
        '''This is the combination of a sample-wise
        L2 normalization with the concatenation of the
        positive part of the input with the negative part
        of the input. The result is a tensor of samples that are
        twice as large as the input samples.

        It can be used in place of a ReLU.
        '''

        def compute_output_shape(self, input_shape):
            shape = list(input_shape)
            assert len(shape) == 2  # only valid for 2D tensors
            shape[-1] *= 2
            return tuple(shape)

        def call(self, inputs):
            inputs -= K.mean(inputs, axis=1, keepdims=True)
            inputs = K.l2_normalize(inputs, axis=1)
            pos = K.relu(inputs)
            neg = K.relu(-inputs)
            return K.concatenate([pos, neg], axis=1)

    # global parameters
    num_classes = 10

    # build the model
    model = Sequential()
    model.add(layers.Dense(256, input_shape=(784,)))
    model.add(Antirectifier())
    model.add(layers.Dropout(0.1))
    model.add(layers.Dense(256))
    model.add(Antirectifier())
    model.add(layers.Dropout(0.1))
    model.add(layers.Dense(num_classes))
    model.add(layers.Activation('softmax'))
    return {"model": model, "sample": "unit", "custom_objects": "antirectifier_objects.py",
            "custom_classes": {"Antirectifier": Antirectifier}}
