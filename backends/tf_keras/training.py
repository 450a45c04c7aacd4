"""The loss and its gradient with respect to the model outputs: as for Keras 3 on TensorFlow."""
from backends.tensorflow.training import loss_and_output_gradients, to_tensor

__all__ = ["loss_and_output_gradients", "to_tensor"]
