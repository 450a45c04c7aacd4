"""Gradients of the model's loss (backends.modern_keras.objectives) with a TensorFlow tape: Keras 3 on TensorFlow and tf_keras."""
from __future__ import annotations


def differentiate(model, inputs, differentiated, objective):
    """For loss = objective(model(inputs) outputs) in inference mode, in two steps: yields the outputs
    (once the forward pass is done), then (d loss / d inputs[i] for i in `differentiated`,
    d loss / d w for w in model.weights)."""
    import tensorflow as tf

    tensors = [tf.convert_to_tensor(x) for x in inputs]
    sources = [tensors[i] for i in differentiated] + [tf_variable(w) for w in model.weights]
    with tf.GradientTape() as tape:
        tape.watch(sources)  # the weights too: a tape watches only trainable variables by itself
        outputs = model(tensors, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        loss = objective(outputs)
    yield outputs
    grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = [tf.convert_to_tensor(g).numpy() for g in grads]  # Embedding's gradient comes as IndexedSlices
    yield grads[:len(differentiated)], grads[len(differentiated):]


def tf_variable(weight):
    """The tf.Variable behind a weight: tf_keras weights are tf.Variables, Keras 3 ones hold one in `.value`."""
    import tensorflow as tf

    return weight if isinstance(weight, tf.Variable) else weight.value
