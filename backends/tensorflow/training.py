"""The loss and its gradient with respect to the model outputs, with a TensorFlow tape
(Keras 3 on TensorFlow and tf_keras)."""
from __future__ import annotations


def loss_and_output_gradients(loss_of, targets, predictions):
    """(sum over outputs of the batch mean of loss_of(target, prediction), d loss / d prediction)."""
    import tensorflow as tf

    outputs = [tf.constant(p) for p in predictions]
    with tf.GradientTape() as tape:
        tape.watch(outputs)
        loss = tf.add_n([tf.reduce_mean(loss_of(tf.constant(t, dtype=o.dtype), o)) for t, o in zip(targets, outputs)])
    return loss.numpy(), [g.numpy() for g in tape.gradient(loss, outputs)]


def to_tensor(array):
    import tensorflow as tf

    return tf.convert_to_tensor(array)
