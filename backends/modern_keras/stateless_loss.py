"""The loss whose gradients `backward` reports, as a pure function for Keras 3's JAX and
PyTorch backends (which differentiate functions, not variables)."""
from __future__ import annotations


def stateless_loss(model, inputs: list, differentiated: list[int], objective):
    """loss(input_values, weight_values) = (objective(model outputs), the outputs) in inference mode, on `inputs`
    with inputs[i] replaced by input_values[j] for the j-th i in `differentiated`, and with the
    weights (model.weights) set to weight_values (`objective`: backends.modern_keras.objectives)."""

    def loss(input_values, weight_values):
        arguments = list(inputs)
        for index, value in zip(differentiated, input_values):
            arguments[index] = value
        values = {id(variable): value for variable, value in zip(model.weights, weight_values)}
        outputs, _ = model.stateless_call([values.get(id(v), v.value) for v in model.trainable_variables],
                                          [values.get(id(v), v.value) for v in model.non_trainable_variables],
                                          arguments, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return objective(outputs), outputs

    return loss
