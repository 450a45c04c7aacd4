"""Keras 3 and tf_keras side of kdiff.

Builds models from Keras 1/2 JSON (which Keras 3 cannot read), loads legacy HDF5 weights
as stored, loads native Keras 3 files, and runs a model capturing every layer's output.
Importing this package imports no deep-learning framework: the caller passes its `keras`
module (Keras 3 or tf_keras) to `loading.load_model`.
"""
