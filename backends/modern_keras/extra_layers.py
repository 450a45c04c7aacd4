"""Load a Keras 3 model that `kdiff fix` wrote with one of kdiff's own layers (a Keras 1/2 layer that
Keras 3 no longer has: LocallyConnected1D/2D, Highway, MaxoutDense, SReLU, ParametricSoftplus,
ThresholdedReLU; and TheanoSamePooling, a 'same' pooling as Theano padded it; their class names in the file are
"kdiff>Highway", ...):

    import keras
    import backends.modern_keras.extra_layers  # noqa: F401  (defines and registers them)
    model = keras.saving.load_model("fixed/model.keras")

(kdiff installed with `pip install -e .`, or its folder on sys.path.) For a tf_keras model.json that kdiff
wrote, use `backends.modern_keras.extra_layer_classes.layer_classes(tf_keras)` as the custom objects.
"""
import keras

from backends.modern_keras.extra_layer_classes import layer_classes
from backends.modern_keras.theano_pooling import theano_pooling_class

globals().update(layer_classes(keras))
TheanoSamePooling = theano_pooling_class(keras)
