"""Theano's part of a training step (the trainer is backends.original_keras.training's): the loss
and its gradient with respect to the model outputs, as one compiled function."""
from __future__ import annotations


def loss_and_output_gradients_function(loss_of, outputs: list):
    """A function (targets + predictions) -> [loss, d loss / d prediction, ...], the loss being the
    batch mean of ``loss_of(target, prediction)`` summed over the model's ``outputs``."""
    from keras import backend as K

    from backends.theano.gradients import gradients

    targets = [K.placeholder(ndim=K.ndim(out), dtype=K.dtype(out)) for out in outputs]
    predictions = [K.placeholder(ndim=K.ndim(out), dtype=K.dtype(out)) for out in outputs]
    loss = sum(K.mean(loss_of(t, p)) for t, p in zip(targets, predictions))
    return K.function(targets + predictions, [loss] + gradients(loss, predictions))
