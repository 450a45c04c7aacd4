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
from kdiff.protocol import vocabulary as v
from backends.common.errors import ModelInputError


@command("compile_optimizer")
def compile_optimizer(call: Call) -> None:
    call.reply(call.worker.compile_optimizer(call.args["optimizer"], dict(call.args.get("config") or {}),
                                             call.args["loss"]))


@command("train_gradients")
def train_gradients(call: Call) -> None:
    """Streams the loss ({"loss": ...}), then one part per layer: its OUTPUTS, the loss's
    OUTPUT_GRADIENTS and its WEIGHT_GRADIENTS (kdiff.protocol.vocabulary)."""
    worker, trainer = call.worker, _trainer(call)
    inputs = worker.check_inputs(call.numbered(v.MODEL_INPUTS))
    loss, output_grads = trainer.loss_and_output_gradients(inputs, call.numbered(v.LABELS))
    call.part({"loss": loss})
    activations = worker.forward(inputs)
    own_gradients = {}
    for (name, outputs), (grad_name, layer_grads, weight_grads) in zip(activations,
                                                                       worker.backward(inputs, output_grads)):
        if name != grad_name:
            raise RuntimeError(f"forward and backward visit layers in different orders ({name}, {grad_name})")
        for index, (_, grad) in enumerate(weight_grads):
            own_gradients[(name, index)] = grad
        parts = {**v.pack(outputs, v.OUTPUTS), **v.pack(layer_grads, v.OUTPUT_GRADIENTS),
                 **v.pack([grad for _, grad in weight_grads], v.WEIGHT_GRADIENTS)}
        call.part({"layer": name, "weights": [weight for weight, _ in weight_grads]}, parts)
    trainer.own_gradients = [own_gradients[(weight["layer"], weight["index"])] for weight in trainer.trainable]
    call.reply({"layers": len(own_gradients)})


@command("optimizer_step")
def optimizer_step(call: Call) -> None:
    """Apply the WEIGHT_GRADIENTS sent (i: position among the trainable weights) and this side's
    own gradients for the others; answers each weight's UPDATES, the gradients APPLIED, the
    optimizer's slots before and after (SLOTS_BEFORE, SLOTS_AFTER); and for each moving statistic
    (i: position among the 'statistics' that compile_optimizer described) its value before and
    after (STATISTICS_BEFORE, STATISTICS_AFTER), the batch's own (BATCH_STATISTICS) and, in the
    header, how many values each batch statistic averages ("samples")."""
    trainer = _trainer(call)
    if trainer.own_gradients is None:
        raise ModelInputError("'optimizer_step' needs a 'train_gradients' first", "compute the gradients first")
    gradients = list(trainer.own_gradients)
    sent = {key: value for key, value in call.arrays.items()}
    for index in range(len(gradients)):
        value = sent.pop(f"{v.WEIGHT_GRADIENTS}{index}", None)
        if value is not None and value.shape != gradients[index].shape:
            raise ModelInputError(f"the gradient of trainable weight {index} has shape {value.shape}, the weight "
                                  f"{gradients[index].shape}", "send each gradient in the shape of its weight")
        if value is not None:
            gradients[index] = np.array(value)
    if sent:
        raise ModelInputError(f"arrays {sorted(sent)!r} fit no trainable weight",
                              f"send {v.WEIGHT_GRADIENTS}<i> for trainable weight i, and nothing else")
    step = trainer.apply(gradients)
    arrays = {**v.pack(step.updates, v.UPDATES), **v.pack(gradients, v.APPLIED),
              **v.pack_slots(step.slots_before, v.SLOTS_BEFORE), **v.pack_slots(step.slots_after, v.SLOTS_AFTER)}
    statistics = step.statistics
    if statistics is not None:
        arrays.update({**v.pack(statistics.before, v.STATISTICS_BEFORE), **v.pack(statistics.after, v.STATISTICS_AFTER),
                       **v.pack(statistics.batch, v.BATCH_STATISTICS)})
    call.reply({"iterations": [step.iterations_before, step.iterations_after], "slots": list(step.slots_after),
                "samples": list(statistics.samples) if statistics is not None else []}, arrays)


@command("trial_step")
def trial_step(call: Call) -> None:
    """The last step again, from the state it started in, with the optimizer's settings changed
    by ``overrides`` (and, where given, the update ``formula`` of another Keras generation) and
    the layers' settings by ``layers`` ({layer: {"momentum": value}}); answers the updates it
    would have made (UPDATES) and the moving statistics' updates (STATISTICS_UPDATES). The model and optimizer
    keep their current state."""
    updates, statistics = _trainer(call).trial(dict(call.args.get("overrides") or {}), call.args.get("formula"),
                                               dict(call.args.get("layers") or {}))
    arrays = {**v.pack(updates, v.UPDATES), **v.pack(statistics, v.STATISTICS_UPDATES)}
    call.reply({}, arrays)


def _trainer(call: Call):
    return call.worker.trainer
