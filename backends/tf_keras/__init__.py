"""tf_keras: the Keras 2 API on TensorFlow 2."""
