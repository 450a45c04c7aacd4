"""The loss functions of the Keras that wrote the file (1.2.2 or 2.3.1), by name."""
from __future__ import annotations

from backends.common.errors import ModelInputError


def loss_function(name: str, keras1: bool):
    """Keras's loss function called `name` (y_true, y_pred) -> per-sample loss, as a Theano graph."""
    import keras

    losses = keras.objectives if keras1 else keras.losses
    try:
        return losses.get(name)
    except Exception as exc:  # Keras 2 raises ValueError for an unknown name, Keras 1 a bare Exception
        raise ModelInputError(f"Keras {keras.__version__} has no loss {name!r}",
                              "use a Keras loss name, e.g. mse or categorical_crossentropy") from exc
