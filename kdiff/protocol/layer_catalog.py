"""The layer classes kdiff knows, as plain data: the one list that the coordinator's pre-check
(kdiff/model_files.py) and the Keras 3 / tf_keras translation (backends/modern_keras/legacy_config.py)
both read. Framework-free: backends may import it.

KERAS2_PUBLIC_LAYERS and KERAS1_PUBLIC_LAYERS are every layer class that `keras.layers` of Keras 2.3.1
and Keras 1.2.2 export (read from the real packages; aliases such as MaxPool2D serialize under the class
they alias, so they never appear in a file). tests/test_layer_catalog.py checks these lists against the
installed Theano environments and checks that both sides use this module.
"""
from __future__ import annotations

KERAS2_PUBLIC_LAYERS = frozenset("""
Activation ActivityRegularization Add AlphaDropout Average AveragePooling1D AveragePooling2D AveragePooling3D
BatchNormalization Bidirectional Concatenate Conv1D Conv2D Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM2D
ConvLSTM2DCell ConvRecurrent2D Cropping1D Cropping2D Cropping3D CuDNNGRU CuDNNLSTM Dense DepthwiseConv2D Dot
Dropout ELU Embedding Flatten GRU GRUCell GaussianDropout GaussianNoise GlobalAveragePooling1D
GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D Highway
InputLayer LSTM LSTMCell Lambda Layer LeakyReLU LocallyConnected1D LocallyConnected2D Masking MaxPooling1D
MaxPooling2D MaxPooling3D Maximum MaxoutDense Minimum Multiply PReLU Permute RNN ReLU Recurrent RepeatVector
Reshape SeparableConv1D SeparableConv2D SimpleRNN SimpleRNNCell Softmax SpatialDropout1D SpatialDropout2D
SpatialDropout3D StackedRNNCells Subtract ThresholdedReLU TimeDistributed UpSampling1D UpSampling2D UpSampling3D
ZeroPadding1D ZeroPadding2D ZeroPadding3D
""".split())

KERAS1_PUBLIC_LAYERS = frozenset("""
Activation ActivityRegularization AtrousConvolution1D AtrousConvolution2D AveragePooling1D AveragePooling2D
AveragePooling3D BatchNormalization Bidirectional ConvLSTM2D ConvRecurrent2D Convolution1D Convolution2D
Convolution3D Cropping1D Cropping2D Cropping3D Deconvolution2D Dense Dropout ELU Embedding Flatten GRU
GaussianDropout GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D Highway InputLayer LSTM Lambda Layer LeakyReLU
LocallyConnected1D LocallyConnected2D Masking MaxPooling1D MaxPooling2D MaxPooling3D MaxoutDense Merge PReLU
ParametricSoftplus Permute Recurrent RepeatVector Reshape SReLU SeparableConvolution2D SimpleRNN
SpatialDropout1D SpatialDropout2D SpatialDropout3D ThresholdedReLU TimeDistributed TimeDistributedDense
UpSampling1D UpSampling2D UpSampling3D Wrapper ZeroPadding1D ZeroPadding2D ZeroPadding3D
""".split())

# Public classes that no saved model holds as a layer of its own: abstract bases (Layer, Recurrent,
# ConvRecurrent2D, Wrapper), and the cell that ConvLSTM2D builds inside itself (Keras 2.3.1's RNN cannot
# take it: it is 5D).
NOT_SAVED_AS_LAYERS = frozenset({"Layer", "Recurrent", "ConvRecurrent2D", "Wrapper", "ConvLSTM2DCell"})

# Containers a model file nests layers in.
CONTAINERS = frozenset({"Sequential", "Model", "Functional"})

# The cells an RNN layer takes (its config's "cell"; StackedRNNCells holds a list of them).
RNN_CELLS = frozenset({"SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells"})

# Keras 1 class name -> the Keras 2 class kdiff describes it as (where the layer computes the same).
KERAS1_CLASS_RENAMES = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "AtrousConvolution1D": "Conv1D", "AtrousConvolution2D": "Conv2D",
    "Deconvolution2D": "Conv2DTranspose", "SeparableConvolution2D": "SeparableConv2D",
    "TimeDistributedDense": "Dense",   # a Dense on every timestep: Keras 2/3 Dense acts on the last axis
}

# A CuDNN layer -> the layer it is rebuilt as (its weights converted as Keras 2.3.1 converts them:
# CuDNNLSTM's doubled bias summed, CuDNNGRU's bias reshaped to reset_after=True's (2, 3 units)).
CUDNN_TRANSLATIONS = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}

# Classes that Keras 3 does not have: kdiff builds them from its own layers
# (backends/modern_keras/extra_layer_classes.py), registered as "kdiff>NAME". tf_keras still has the
# ones in TF_KERAS_NATIVE.
KDIFF_EXTRA_LAYERS = frozenset({"LocallyConnected1D", "LocallyConnected2D", "Highway", "MaxoutDense", "SReLU",
                                "ParametricSoftplus", "ThresholdedReLU"})
TF_KERAS_NATIVE = frozenset({"LocallyConnected1D", "LocallyConnected2D", "ThresholdedReLU"})

# Identity at inference (each backend's own random numbers in training).
STOCHASTIC_LAYERS = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                               "GaussianNoise", "GaussianDropout", "AlphaDropout"})

# The classes a translated description holds (Keras 2 names, plus the Keras 1/2 legacy layers kdiff builds
# itself). backends/modern_keras/legacy_config.py refuses anything else.
DESCRIPTION_CLASSES = frozenset("""
InputLayer Dense Activation Flatten Reshape Permute RepeatVector Masking Embedding Lambda ActivityRegularization
Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout AlphaDropout
Conv1D Conv2D Conv3D Conv2DTranspose Conv3DTranspose SeparableConv1D SeparableConv2D DepthwiseConv2D
LocallyConnected1D LocallyConnected2D
MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D
GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalAveragePooling1D GlobalAveragePooling2D
GlobalAveragePooling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D
UpSampling1D UpSampling2D UpSampling3D BatchNormalization
SimpleRNN LSTM GRU ConvLSTM2D RNN SimpleRNNCell LSTMCell GRUCell StackedRNNCells Bidirectional TimeDistributed
Add Subtract Multiply Average Maximum Minimum Concatenate Dot
LeakyReLU PReLU ELU ReLU ThresholdedReLU Softmax SReLU ParametricSoftplus Highway MaxoutDense
Sequential
""".split())

# Every class a Keras 1/2 model file may name that kdiff loads on every side (the coordinator's pre-check).
SUPPORTED_LAYERS = (DESCRIPTION_CLASSES | frozenset(KERAS1_CLASS_RENAMES) | frozenset(CUDNN_TRANSLATIONS)
                    | CONTAINERS | {"Merge"})
