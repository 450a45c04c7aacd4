"""What the in-job probe reads from the job's model (Keras 3 on any backend, or tf_keras), shared by
the backends' capture modules: each ``backends/<backend>/capture.py`` makes a ``Capture`` with
itself as ``hooks`` (its framework's part: ``compile_one_pass``, ``read_variables``, ``device``,
``versions``; and ``take_batch``, how ``fit``'s step is given its batch, for kdiff.probe's
callback). Every capture module has these same functions (CAPTURE_FUNCTIONS), Theano's too,
refusing. kdiff.probe reaches them through backends.registry (kdiff.protocol.capture).

Everything runs in inference mode (``training=False``) on the batch given, and only reads:
no weight, optimizer slot or random-number state changes, so the job computes exactly what
it would have computed without the probe. Gradients are those of the model's compiled loss:
per output, the batch mean of its loss times its loss weight, summed over the outputs.

One pass gives everything: the model is rebuilt once from its own layers (sharing their
weights) with a zero-valued extra input added to every layer output, and returning every
layer output; one forward and one backward pass of that model on the batch give each
layer's output, the loss, and its gradient with respect to every layer output (the
gradient with respect to the extra input) and every weight. The pass is compiled once
(tf.function, jax.jit) and reused for every snapshot and every step's live metrics."""
from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.modern_keras.graph import (dtype_name, flat, graph_nodes, history, keras_module, layer_calls,
                                         node_outputs, weight_name)
from backends.modern_keras.loading import describe_layers, forward_all, input_specs
from backends.modern_keras.layer_ops import call_arguments
from kdiff.protocol import vocabulary
from kdiff.protocol.capture import CaptureError
from kdiff.protocol.json_values import json_number

CAPTURE_FUNCTIONS = ("capture", "compile_one_pass", "read_variables", "device", "versions", "take_batch")


def split_batch(batch, input_names: list[str] | None = None,
                output_names: list[str] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """([x per model input], [y per model output]) as numpy, from a batch given as (x, y) or
    (x, y, sample_weight), x and y each one array, a list/tuple of arrays, or a dict by name."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise CaptureError("the probe needs the batch as (x, y) or (x, y, sample_weight)")
    return _arrays(batch[0], input_names, "input"), _arrays(batch[1], output_names, "output")


def _arrays(value, names: list[str] | None, kind: str) -> list[np.ndarray]:
    if isinstance(value, dict):
        if not names or set(value) != set(names):
            raise CaptureError(f"the batch's {kind}s are keyed {sorted(value)}, the model's {kind}s are {names}")
        return [_numpy(value[name]) for name in names]
    if isinstance(value, (list, tuple)):
        return [_numpy(item) for item in value]
    return [_numpy(value)]


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):          # torch
        value = value.detach().cpu()
    return np.asarray(value)


class Capture:
    """Reads one model; built once per probe (the one-pass model is built on first use)."""

    def __init__(self, model, loss, backend: str, hooks):
        self.model = model
        self.keras = keras_module(model)
        self.backend = backend
        self.hooks = hooks  # the backend's capture module: its framework's part of the pass
        self.input_names = [history(t)[0].name for t in model.inputs]
        self.output_names = list(getattr(model, "output_names", None) or
                                 [history(t)[0].name for t in model.outputs])
        self.losses = output_losses(self.keras, model, loss, self.output_names)
        self._pass = None
        self._model_hash = None

    def split(self, batch) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """A training batch as ([x per model input], [y per model output])."""
        return split_batch(batch, self.input_names, self.output_names)

    # ---- every step while attached -------------------------------------------------
    def live_metrics(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> dict:
        """The loss on the batch and the norm of the gradient over every trainable weight."""
        return self._metrics(self._one_pass().run(xs, ys))

    def _metrics(self, result: "PassResult") -> dict:
        trainable = {id(w) for w in self.model.trainable_weights}
        squares = sum(float(np.square(np.asarray(g, np.float64)).sum())
                      for w, g in zip(result.weights, result.weight_grads) if id(w) in trainable)
        return {"loss": json_number(result.loss), "grad_norm": json_number(math.sqrt(squares))}

    # ---- a snapshot ------------------------------------------------------------------
    def model_hash(self) -> str:
        """A hash of the model's architecture (and Keras version): the coordinator keeps the model
        file by it, so the file is sent once, not with every snapshot (the weights always are)."""
        if self._model_hash is None:
            text = f"{self.keras.__name__} {self.keras.__version__} {self.backend} {self.model.to_json()}"
            self._model_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        return self._model_hash

    def snapshot(self, xs: list[np.ndarray], ys: list[np.ndarray], step: int,
                 coordinator_has: str | None = None) -> tuple[dict, dict]:
        """The snapshot message (header, arrays); see kdiff.protocol.snapshot for its layout. The model
        file goes only if the coordinator does not hold the one of this architecture already."""
        one_pass = self._one_pass()
        result = one_pass.run(xs, ys)
        arrays = {**vocabulary.pack(xs, vocabulary.MODEL_INPUTS), **vocabulary.pack(ys, vocabulary.LABELS),
                  **vocabulary.pack(result.output_grads, vocabulary.PROJECTIONS)}
        grad_of = {id(w): g for w, g in zip(result.weights, result.weight_grads)}
        slot_variables = self._optimizer_variables()
        values = one_pass.read([v for layer, _ in one_pass.layers for v in layer.weights] + slot_variables)
        weight_names = {}
        for index, (layer, outputs) in enumerate(one_pass.layers):
            arrays.update({f"o{index}.{k}": result.outputs[i] for k, i in enumerate(outputs)})
            arrays.update({f"g{index}.{k}": result.probe_grads[i] for k, i in enumerate(outputs)})
            for j, variable in enumerate(layer.weights):
                arrays[f"w{index}.{j}"] = value = values.pop(0)
                arrays[f"wg{index}.{j}"] = grad_of[id(variable)] if id(variable) in grad_of \
                    else np.zeros(value.shape, value.dtype)
            weight_names[layer.name] = [weight_name(variable) for variable in layer.weights]
        arrays.update(vocabulary.pack(values, vocabulary.SLOTS_AFTER))
        model_hash = self.model_hash()
        if coordinator_has != model_hash:
            arrays["model_file"] = self._saved_model()
        header = {"type": "snapshot", "step": step, **self._metrics(result), "backend": self.backend,
                  "versions": self.hooks.versions(self.keras), "device": self.hooks.device(), "model_hash": model_hash,
                  "layers": [{**layer, "weights": weight_names.get(layer["name"], [])}
                             for layer in describe_layers(self.model)],
                  "inputs": input_specs(self.model), "outputs": self.output_names,
                  "optimizer_slots": [getattr(v, "path", None) or v.name for v in slot_variables]}
        return header, arrays

    def _one_pass(self) -> "OnePass":
        if self._pass is None:
            self._pass = OnePass(self.keras, self.hooks, self.model, self.losses)
        return self._pass

    def _saved_model(self) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="kdiff-probe-") as folder:
            path = Path(folder) / "model.keras"
            self.model.save(str(path))
            return np.frombuffer(path.read_bytes(), dtype=np.uint8)

    def _optimizer_variables(self) -> list:
        optimizer = getattr(self.model, "optimizer", None)
        variables = getattr(optimizer, "variables", None) if optimizer is not None else None
        return list(variables() if callable(variables) else variables or [])


def output_losses(keras, model, loss, output_names: list[str]) -> list[tuple[object, float]]:
    """(loss function (y_true, y_pred) -> per-sample or mean loss, weight) per model output, from
    ``loss`` or the model's compiled loss and loss weights."""
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise CaptureError("the model is not compiled with a loss; pass loss= to the probe")
    if isinstance(loss, dict):
        missing = [name for name in output_names if name not in loss]
        if missing:
            raise CaptureError(f"the loss names no loss for the output(s) {missing}")
        loss = [loss[name] for name in output_names]
    elif not isinstance(loss, (list, tuple)):
        loss = [loss] * len(output_names)
    if len(loss) != len(output_names):
        raise CaptureError(f"{len(loss)} losses for {len(output_names)} outputs")
    weights = _loss_weights(model)
    if isinstance(weights, dict):
        weights = [weights.get(name, 1.0) for name in output_names]
    weights = list(weights) if weights is not None else [1.0] * len(output_names)
    if len(weights) != len(output_names):
        raise CaptureError(f"{len(weights)} loss weights for {len(output_names)} outputs")
    return [(keras.losses.get(item) if isinstance(item, str) else item, float(weight))
            for item, weight in zip(loss, weights)]


def _loss_weights(model):
    config = getattr(getattr(model, "_compile_config", None), "config", None)   # Keras 3
    if isinstance(config, dict):
        return config.get("loss_weights")
    compiled = getattr(model, "compiled_loss", None)                              # tf_keras
    return getattr(compiled, "_user_loss_weights", None)


@dataclass(frozen=True)
class PassResult:
    """What one pass of the probe's model on a batch gives (all numpy but ``weights``)."""
    loss: float
    outputs: list          # every probed layer output
    probe_grads: list      # d loss / d each of them
    weights: list          # the variables differentiated (OnePass.weights)
    weight_grads: list     # d loss / d each of them, zeros where the loss does not depend on one
    output_grads: list     # d loss / d each model output


def nothing_to_put_back() -> None:
    """``take_batch``'s restore where taking the batch changed nothing of the model."""


class OnePass:
    """The model rebuilt from its own layers with a zero input added to every layer output, returning
    every layer output; and the compiled function computing loss, outputs and gradients on a batch."""

    def __init__(self, keras, hooks, model, losses):
        self.keras, self.hooks, self.model, self.losses = keras, hooks, model, losses
        rebuilt = {id(t): keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"kdiff_input_{i}")
                   for i, t in enumerate(model.inputs)}
        self.probe_inputs, index, probed = [], {}, []
        for layer, _, node in graph_nodes(model):
            args, kwargs = call_arguments(node, rebuilt)
            for original, output in zip(node_outputs(node), flat(layer(*args, **kwargs))):
                probe = keras.Input(batch_shape=output.shape, dtype=output.dtype,
                                    name=f"kdiff_probe_{len(self.probe_inputs)}")
                index[id(original)] = len(self.probe_inputs)
                rebuilt[id(original)] = keras.layers.Add(name=f"kdiff_probed_{len(self.probe_inputs)}")([output, probe])
                self.probe_inputs.append(probe)
                probed.append(rebuilt[id(original)])
        self.layers = [(layer, [index[id(t)] for t in tensors]) for layer, tensors, _ in layer_calls(model)]
        self.model_outputs = [index[id(t)] for t in model.outputs]
        self.probed = keras.Model([rebuilt[id(t)] for t in model.inputs] + self.probe_inputs, probed)
        self.weights = list(self.probed.trainable_variables) + list(self.probed.non_trainable_variables)
        self._shapes: dict = {}
        self._function = None

    def run(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> PassResult:
        if len(xs) != len(self.model.inputs) or len(ys) != len(self.model_outputs):
            raise CaptureError(f"the batch has {len(xs)} input(s) and {len(ys)} target(s); the model takes "
                               f"{len(self.model.inputs)} and gives {len(self.model_outputs)}")
        probes = [np.zeros(shape, dtype) for shape, dtype in self._probe_shapes(xs)]
        if self._function is None:
            self._function = self.hooks.compile_one_pass(self)
        loss, outputs, probe_grads, weight_grads = self._function(xs, probes, ys)
        return PassResult(float(loss), outputs, probe_grads, self.weights, weight_grads,
                          [probe_grads[i] for i in self.model_outputs])

    def read(self, variables: list) -> list[np.ndarray]:
        """The variables' values now, as arrays of their own (the backend's read_variables)."""
        return self.hooks.read_variables(variables)

    def _probe_shapes(self, xs: list[np.ndarray]) -> list[tuple]:
        """Each layer output's shape and dtype for inputs of these shapes (one forward pass per new shape)."""
        key = tuple((x.shape, x.dtype.str) for x in xs)
        if key not in self._shapes:
            batch = xs[0].shape[0]
            shapes = [tuple(batch if d is None else int(d) for d in p.shape[:1]) + tuple(p.shape[1:])
                      for p in self.probe_inputs]
            if any(d is None for shape in shapes for d in shape):
                outputs = [o for _, layer_outputs in forward_all(self.model, xs) for o in layer_outputs]
                shapes = [o.shape for o in outputs]
            self._shapes[key] = [(shape, dtype_name(p.dtype)) for shape, p in zip(shapes, self.probe_inputs)]
        return self._shapes[key]

    def objective(self, ops):
        """The loss as the backend's pass computes it, in the backend's ``ops``: (every layer output, the
        targets) -> the compiled loss, per output the batch mean times its loss weight, summed."""
        outputs_at, losses = self.model_outputs, self.losses

        def objective(outputs, ys):
            total = 0.0
            for (loss_fn, weight), i, y in zip(losses, outputs_at, ys):
                total = total + weight * ops.mean(loss_fn(ops.convert_to_tensor(y), outputs[i]))
            return total

        return objective


def owned(value) -> np.ndarray:
    """A numpy copy that owns its memory: sent without copying (ZeroMQ reads it after the step
    has gone on), it must not be a view of a variable the optimizer updates in place."""
    return np.array(_numpy(value), copy=True)
