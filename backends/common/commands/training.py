"""Training steps with the model's real optimizer and loss (``kdiff train``).

A step is two calls: ``train_gradients`` (loss, every layer's activation and gradient, every
weight's gradient, in inference mode) and ``optimizer_step`` (the framework's own optimizer
applies gradients: this side's own, or ones the coordinator sends; first, every
BatchNormalization layer's moving statistics are updated from the batch by the layer's own
training-mode rule). ``trial_step`` re-runs the last step from its starting state with changed
optimizer or layer settings, leaving the model as it was.
The per-framework part is the worker's trainer (``worker.compile_optimizer``, ``worker.trainer``):
its family's Trainer, taking the framework's part from the backend's training.py."""
from __future__ import annotations

import numpy as np

from backends.common.commands import Call, command
from backends.common.errors import ModelInputError


@command("compile_optimizer")
def compile_optimizer(call: Call) -> None:
    call.reply(call.worker.compile_optimizer(call.args["optimizer"], dict(call.args.get("config") or {}),
                                             call.args["loss"]))


@command("train_gradients")
def train_gradients(call: Call) -> None:
    """Streams the loss ({"loss": ...}), then one part per layer: its outputs (o*), the loss's
    gradient with respect to them (g*) and to each of its weights (w*)."""
    worker, trainer = call.worker, _trainer(call)
    inputs = worker.check_inputs(call.numbered("x"))
    loss, output_grads = trainer.loss_and_output_gradients(inputs, call.numbered("y"))
    call.part({"loss": loss})
    activations = worker.forward(inputs)
    own_gradients = {}
    for (name, outputs), (grad_name, layer_grads, weight_grads) in zip(activations,
                                                                       worker.backward(inputs, output_grads)):
        if name != grad_name:
            raise RuntimeError(f"forward and backward visit layers in different orders ({name}, {grad_name})")
        for index, (_, grad) in enumerate(weight_grads):
            own_gradients[(name, index)] = grad
        parts = {f"o{i}": out for i, out in enumerate(outputs)}
        parts.update({f"g{i}": grad for i, grad in enumerate(layer_grads)})
        parts.update({f"w{i}": grad for i, (_, grad) in enumerate(weight_grads)})
        call.part({"layer": name, "weights": [weight for weight, _ in weight_grads]}, parts)
    trainer.own_gradients = [own_gradients[(weight["layer"], weight["index"])] for weight in trainer.trainable]
    call.reply({"layers": len(own_gradients)})


@command("optimizer_step")
def optimizer_step(call: Call) -> None:
    """Apply the gradients sent as ``g<i>`` (i: position among the trainable weights) and this
    side's own gradients for the others; answers each weight's update (u<i>), gradient applied
    (a<i>), and optimizer slots before (b:<kind>:<i>) and after (s:<kind>:<i>); and for each
    moving statistic (i: position among the 'statistics' that compile_optimizer described) its
    value before (nb<i>) and after (na<i>), the batch's own statistic (nx<i>) and, in the
    header, how many values each batch statistic averages ("samples")."""
    trainer = _trainer(call)
    if trainer.own_gradients is None:
        raise ModelInputError("'optimizer_step' needs a 'train_gradients' first", "compute the gradients first")
    gradients = list(trainer.own_gradients)
    for key, value in call.arrays.items():
        index = int(key[1:])
        if not key.startswith("g") or not 0 <= index < len(gradients) or value.shape != gradients[index].shape:
            raise ModelInputError(f"gradient {key!r} of shape {value.shape} fits no trainable weight",
                                  "send g<i> in the shape of trainable weight i")
        gradients[index] = np.array(value)
    step = trainer.apply(gradients)
    arrays = {f"u{i}": update for i, update in enumerate(step.updates)}
    arrays.update({f"a{i}": grad for i, grad in enumerate(gradients)})
    for prefix, slots in (("b", step.slots_before), ("s", step.slots_after)):
        arrays.update({f"{prefix}:{kind}:{i}": value for kind, values in slots.items() for i, value in enumerate(values)})
    statistics = step.statistics
    if statistics is not None:
        for prefix, values in (("nb", statistics.before), ("na", statistics.after), ("nx", statistics.batch)):
            arrays.update({f"{prefix}{i}": value for i, value in enumerate(values)})
    call.reply({"iterations": [step.iterations_before, step.iterations_after], "slots": list(step.slots_after),
                "samples": list(statistics.samples) if statistics is not None else []}, arrays)


@command("trial_step")
def trial_step(call: Call) -> None:
    """The last step again, from the state it started in, with the optimizer's settings changed
    by ``overrides`` (and, where given, the update ``formula`` of another Keras generation) and
    the layers' settings by ``layers`` ({layer: {"momentum": value}}); answers the updates it
    would have made (u<i>) and the moving statistics' updates (n<i>). The model and optimizer
    keep their current state."""
    updates, statistics = _trainer(call).trial(dict(call.args.get("overrides") or {}), call.args.get("formula"),
                                               dict(call.args.get("layers") or {}))
    arrays = {f"u{i}": update for i, update in enumerate(updates)}
    arrays.update({f"n{i}": update for i, update in enumerate(statistics)})
    call.reply({}, arrays)


def _trainer(call: Call):
    return call.worker.trainer
