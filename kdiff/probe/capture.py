"""What the probe reads from the job's model, in the job's own framework (imported lazily:
kdiff.probe itself needs only numpy and pyzmq).

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
import importlib
import math
import tempfile
from pathlib import Path

import numpy as np


class CaptureError(Exception):
    """The model or batch is one the probe cannot capture (said once, to the coordinator)."""


def keras_of(model):
    """The Keras the model was built with: the ``keras`` (3) or ``tf_keras`` module."""
    return importlib.import_module(type(model).__module__.split(".")[0])


def backend_of(keras) -> str:
    """kdiff's name for the job's backend: tensorflow, jax, torch or tf-keras."""
    return "tf-keras" if keras.__name__ == "tf_keras" else keras.backend.backend()


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


def _owned(value) -> np.ndarray:
    """A numpy copy that owns its memory: sent without copying (ZeroMQ reads it after the step
    has gone on), it must not be a view of a variable the optimizer updates in place."""
    return np.array(_numpy(value), copy=True)


class Capture:
    """Reads one model; built once per probe (the one-pass model is built on first use)."""

    def __init__(self, model, loss=None):
        self.model = model
        self.keras = keras_of(model)
        self.backend = backend_of(self.keras)
        self.input_names = [_history_layer(t).name for t in model.inputs]
        self.output_names = list(getattr(model, "output_names", None) or
                                 [_history_layer(t).name for t in model.outputs])
        self.losses = output_losses(self.keras, model, loss, self.output_names)
        self._pass = None
        self._model_hash = None

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
        """The snapshot message (header, arrays); see kdiff.attach.snapshot for its layout. The model
        file goes only if the coordinator does not hold the one of this architecture already."""
        from backends.modern_keras.loading import describe_layers, input_specs

        one_pass = self._one_pass()
        result = one_pass.run(xs, ys)
        arrays = {f"x{i}": x for i, x in enumerate(xs)}
        arrays.update({f"y{k}": y for k, y in enumerate(ys)})
        arrays.update({f"p{k}": g for k, g in enumerate(result.output_grads)})
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
            weight_names[layer.name] = [_weight_name(variable) for variable in layer.weights]
        arrays.update({f"s{k}": value for k, value in enumerate(values)})
        model_hash = self.model_hash()
        if coordinator_has != model_hash:
            arrays["model_file"] = self._saved_model()
        header = {"type": "snapshot", "step": step, **self._metrics(result), "backend": self.backend,
                  "versions": self._versions(), "device": self._device(), "model_hash": model_hash,
                  "layers": [{**layer, "weights": weight_names.get(layer["name"], [])}
                             for layer in describe_layers(self.model)],
                  "inputs": input_specs(self.model), "outputs": self.output_names,
                  "optimizer_slots": [getattr(v, "path", None) or v.name for v in slot_variables]}
        return header, arrays

    def _one_pass(self) -> "OnePass":
        if self._pass is None:
            self._pass = OnePass(self.keras, self.backend, self.model, self.losses)
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

    def _versions(self) -> dict:
        versions = {"keras": self.keras.__version__}
        framework = "tensorflow" if self.backend == "tf-keras" else self.backend
        versions[framework] = importlib.import_module(framework).__version__
        return versions

    def _device(self) -> str:
        if self.backend == "jax":
            return importlib.import_module("jax").default_backend()
        if self.backend == "torch":
            return "gpu" if importlib.import_module("torch").cuda.is_available() else "cpu"
        gpus = importlib.import_module("tensorflow").config.list_physical_devices("GPU")
        return f"gpu ({len(gpus)})" if gpus else "cpu"


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


class PassResult:
    def __init__(self, loss, outputs, probe_grads, weights, weight_grads, output_grads):
        self.loss = loss                  # float
        self.outputs = outputs            # every probed layer output, numpy
        self.probe_grads = probe_grads    # d loss / d each of them
        self.weights = weights            # the variables differentiated
        self.weight_grads = weight_grads
        self.output_grads = output_grads  # d loss / d each model output


class OnePass:
    """The model rebuilt from its own layers with a zero input added to every layer output, returning
    every layer output; and the compiled function computing loss, outputs and gradients on a batch."""

    def __init__(self, keras, backend: str, model, losses):
        from backends.modern_keras.layer_ops import _call_arguments
        from backends.modern_keras.loading import _flat, _graph_nodes, _layer_calls, _node_outputs

        self.keras, self.backend, self.model, self.losses = keras, backend, model, losses
        rebuilt = {id(t): keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"kdiff_input_{i}")
                   for i, t in enumerate(model.inputs)}
        self.probe_inputs, index, probed = [], {}, []
        for layer, _, node in _graph_nodes(model):
            args, kwargs = _call_arguments(node, rebuilt)
            for original, output in zip(_node_outputs(node), _flat(layer(*args, **kwargs))):
                probe = keras.Input(batch_shape=output.shape, dtype=output.dtype,
                                    name=f"kdiff_probe_{len(self.probe_inputs)}")
                index[id(original)] = len(self.probe_inputs)
                rebuilt[id(original)] = keras.layers.Add(name=f"kdiff_probed_{len(self.probe_inputs)}")([output, probe])
                self.probe_inputs.append(probe)
                probed.append(rebuilt[id(original)])
        self.layers = [(layer, [index[id(t)] for t in tensors]) for layer, tensors, _ in _layer_calls(model)]
        self.model_outputs = [index[id(t)] for t in model.outputs]
        self.probed = keras.Model([rebuilt[id(t)] for t in model.inputs] + self.probe_inputs, probed)
        self.weights = list(self.probed.trainable_variables) + list(self.probed.non_trainable_variables)
        self._shapes: dict = {}
        self._function = None
        self._readers: dict = {}

    def run(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> PassResult:
        if len(xs) != len(self.model.inputs) or len(ys) != len(self.model_outputs):
            raise CaptureError(f"the batch has {len(xs)} input(s) and {len(ys)} target(s); the model takes "
                               f"{len(self.model.inputs)} and gives {len(self.model_outputs)}")
        probes = [np.zeros(shape, dtype) for shape, dtype in self._probe_shapes(xs)]
        if self._function is None:
            self._function = getattr(self, f"_compile_{self.backend.replace('-', '_')}")()
        loss, outputs, probe_grads, weight_grads = self._function(xs, probes, ys)
        return PassResult(float(loss), outputs, probe_grads, self.weights, weight_grads,
                          [probe_grads[i] for i in self.model_outputs])

    def read(self, variables: list) -> list[np.ndarray]:
        """The variables' values now, as arrays of their own (TensorFlow: in one call; a variable updated
        later is copied on write by TensorFlow, never under an array read here)."""
        if self.backend not in ("tensorflow", "tf-keras"):
            return [_owned(v) for v in variables]
        import tensorflow as tf

        from backends.tensorflow.gradients import _tf_variable

        key = tuple(map(id, variables))
        if key not in self._readers:
            sources = [_tf_variable(v) for v in variables]
            self._readers = {key: tf.function(lambda: [tf.identity(v) for v in sources], autograph=False)}
        return [value.numpy() for value in self._readers[key]()]

    def _probe_shapes(self, xs: list[np.ndarray]) -> list[tuple]:
        """Each layer output's shape and dtype for inputs of these shapes (one forward pass per new shape)."""
        key = tuple((x.shape, x.dtype.str) for x in xs)
        if key not in self._shapes:
            batch = xs[0].shape[0]
            shapes = [tuple(batch if d is None else int(d) for d in p.shape[:1]) + tuple(p.shape[1:])
                      for p in self.probe_inputs]
            if any(d is None for shape in shapes for d in shape):
                from backends.modern_keras.loading import forward_all

                outputs = [o for _, layer_outputs in forward_all(self.model, xs) for o in layer_outputs]
                shapes = [o.shape for o in outputs]
            self._shapes[key] = [(shape, _dtype_name(p.dtype)) for shape, p in zip(shapes, self.probe_inputs)]
        return self._shapes[key]

    def _objective(self, ops):
        outputs_at, losses = self.model_outputs, self.losses

        def objective(outputs, ys):
            total = 0.0
            for (loss_fn, weight), i, y in zip(losses, outputs_at, ys):
                total = total + weight * ops.mean(loss_fn(ops.convert_to_tensor(y), outputs[i]))
            return total

        return objective

    # ---- per backend: f(xs, probes, ys) -> (loss, outputs, probe grads, weight grads) as numpy ----------
    def _compile_tensorflow(self):
        import tensorflow as tf

        from backends.tensorflow.gradients import _tf_variable
        from backends.modern_keras.objectives import _ops

        objective, probed = self._objective(_ops(self.keras)), self.probed
        variables = [_tf_variable(w) for w in self.weights]
        count = len(self.probe_inputs)

        @tf.function(autograph=False, reduce_retracing=True)
        def step(xs, probes, ys):
            with tf.GradientTape() as tape:
                tape.watch(probes)
                tape.watch(variables)
                outputs = probed(list(xs) + list(probes), training=False)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                loss = objective(outputs, ys)
            grads = tape.gradient(loss, list(probes) + variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return loss, list(outputs), [tf.convert_to_tensor(g) for g in grads]

        def run(xs, probes, ys):
            with self._unfused():
                loss, outputs, grads = step(list(xs), list(probes), list(ys))
            return (loss.numpy(), [o.numpy() for o in outputs], [g.numpy() for g in grads[:count]],
                    [g.numpy() for g in grads[count:]])

        return run

    def _compile_tf_keras(self):
        return self._compile_tensorflow()

    def _unfused(self):
        """tf_keras's fused batch normalization has no gradient for its moving statistics: unfused while traced."""
        import contextlib

        if self.backend != "tf-keras":
            return contextlib.nullcontext()
        from backends.tf_keras.gradients import _unfused_batch_normalization

        return _unfused_batch_normalization(self.probed)

    def _compile_jax(self):
        import jax

        objective, probed = self._objective(self.keras.ops), self.probed
        split = len(probed.trainable_variables)   # self.weights: the trainable ones, then the others

        def loss(probes, weight_values, xs, ys):
            outputs, _ = probed.stateless_call(weight_values[:split], weight_values[split:],
                                               list(xs) + list(probes), training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            return objective(outputs, ys), outputs

        differentiable = [np.issubdtype(np.dtype(_dtype_name(w.dtype)), np.inexact) for w in self.weights]

        def split_loss(probes, float_weights, other_weights, xs, ys):
            floats, others = iter(float_weights), iter(other_weights)
            return loss(probes, [next(floats) if d else next(others) for d in differentiable], xs, ys)

        function = jax.jit(jax.value_and_grad(split_loss, argnums=(0, 1), has_aux=True))

        def run(xs, probes, ys):
            values = [w.value for w in self.weights]
            floats = [v for v, d in zip(values, differentiable) if d]
            others = [v for v, d in zip(values, differentiable) if not d]
            (value, outputs), (probe_grads, float_grads) = function(probes, floats, others, list(xs), list(ys))
            grads, floats = [], iter(float_grads)
            for w, d in zip(self.weights, differentiable):
                grads.append(np.asarray(next(floats)) if d else np.zeros(tuple(w.shape), _dtype_name(w.dtype)))
            return value, [np.asarray(o) for o in outputs], [np.asarray(g) for g in probe_grads], grads

        return run

    def _compile_torch(self):
        import torch

        objective, probed, ops = self._objective(self.keras.ops), self.probed, self.keras.ops
        trainable, non_trainable = probed.trainable_variables, probed.non_trainable_variables

        def run(xs, probes, ys):
            probe_values = [ops.convert_to_tensor(p).requires_grad_() for p in probes]
            values = {id(v): v.value.detach().requires_grad_(v.value.is_floating_point()) for v in self.weights}
            with torch.enable_grad():
                outputs, _ = probed.stateless_call([values[id(v)] for v in trainable],
                                                   [values[id(v)] for v in non_trainable],
                                                   [ops.convert_to_tensor(x) for x in xs] + probe_values, training=False)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                loss = objective(outputs, ys)
            leaves = probe_values + [values[id(w)] for w in self.weights]
            wanted = [leaf for leaf in leaves if leaf.requires_grad]
            found = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted, allow_unused=True)))
            grads = [found.get(id(leaf)) for leaf in leaves]
            grads = [np.zeros(tuple(leaf.shape), _torch_numpy_dtype(leaf)) if g is None else g.detach().cpu().numpy()
                     for leaf, g in zip(leaves, grads)]
            return (loss.detach().cpu().numpy(), [o.detach().cpu().numpy() for o in outputs],
                    grads[:len(probes)], grads[len(probes):])

        return run


def _torch_numpy_dtype(tensor):
    return tensor.detach().cpu()[:0].numpy().dtype if tensor.dim() else tensor.detach().cpu().numpy().dtype


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def _history_layer(tensor):
    return tensor._keras_history[0]


def _weight_name(variable) -> str:
    """'layer/weight': a Keras 3 variable's path, a tf_keras variable's name without ':0'."""
    path = getattr(variable, "path", None)
    return path if isinstance(path, str) else variable.name.removesuffix(":0")


def json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: those go as "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else str(value)
