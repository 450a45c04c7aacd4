"""What the probe reads from the job's model, in the job's own framework (imported lazily:
kdiff.probe itself needs only numpy and pyzmq).

Everything runs in inference mode (``training=False``) on the batch given, and only reads:
no weight, optimizer slot or random-number state changes, so the job computes exactly what
it would have computed without the probe. Gradients are those of the model's compiled loss
(mean over the batch). Per-layer gradients come from the worker code kdiff already has: the
gradient of ``sum(output * P)`` with ``P = d loss / d output`` equals, by the chain rule, the
gradient of the loss itself for every layer output and weight."""
from __future__ import annotations

import importlib
import math
import tempfile
from pathlib import Path

import numpy as np

GRADIENT_MODULES = {"tensorflow": "backends.tensorflow.gradients", "jax": "backends.jax.gradients",
                    "torch": "backends.torch.gradients", "tf-keras": "backends.tf_keras.gradients"}


class CaptureError(Exception):
    """The model or batch is one the probe cannot capture (said once, to the coordinator)."""


def keras_of(model):
    """The Keras the model was built with: the ``keras`` (3) or ``tf_keras`` module."""
    return importlib.import_module(type(model).__module__.split(".")[0])


def backend_of(keras) -> str:
    """kdiff's name for the job's backend: tensorflow, jax, torch or tf-keras."""
    return "tf-keras" if keras.__name__ == "tf_keras" else keras.backend.backend()


def split_batch(batch) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as numpy from a batch given as (x, y) or (x, y, sample_weight)."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise CaptureError("the probe needs the batch as (x, y) or (x, y, sample_weight)")
    x, y = batch[0], batch[1]
    if isinstance(x, (list, tuple, dict)) or isinstance(y, (list, tuple, dict)):
        raise CaptureError("the probe captures models with one input and one output")
    return _numpy(x), _numpy(y)


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):          # torch
        value = value.detach().cpu()
    return np.asarray(value)


class Capture:
    """Reads one model; built once per probe (the per-layer gradient model is built on first use)."""

    def __init__(self, model, loss=None):
        self.model = model
        self.keras = keras_of(model)
        self.backend = backend_of(self.keras)
        loss = loss if loss is not None else getattr(model, "loss", None)
        if loss is None:
            raise CaptureError("the model is not compiled with a loss; pass loss= to the probe")
        self.loss_fn = self.keras.losses.get(loss) if isinstance(loss, str) else loss
        if len(model.outputs) != 1 or len(model.inputs) != 1:
            raise CaptureError("the probe captures models with one input and one output")
        self.gradients = importlib.import_module(GRADIENT_MODULES[self.backend])
        self._layer_ops = None

    # ---- every step while attached -------------------------------------------------
    def live_metrics(self, x: np.ndarray, y: np.ndarray) -> dict:
        """The loss on the batch and the norm of the gradient over every trainable weight."""
        loss, output_grad = self.loss_and_output_gradient(x, y)
        from backends.modern_keras.objectives import objective

        _, weight_grads = self.gradients.input_and_weight_gradients(self.model, [x], [],
                                                                    objective(self.keras, [output_grad]))
        trainable = {id(w) for w in self.model.trainable_weights}
        squares = sum(float(np.square(np.asarray(g, np.float64)).sum())
                      for w, g in zip(self.model.weights, weight_grads) if id(w) in trainable)
        return {"loss": json_number(loss), "grad_norm": json_number(math.sqrt(squares))}

    def loss_and_output_gradient(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss (mean over the batch) and d loss / d model output, in inference mode."""
        y_pred = _numpy(self.model(x, training=False))
        loss, grad = _loss_gradient(self.backend, self.keras, self.loss_fn, y, y_pred)
        return float(loss), np.asarray(grad, dtype=y_pred.dtype)

    # ---- a snapshot ------------------------------------------------------------------
    def snapshot(self, x: np.ndarray, y: np.ndarray, step: int) -> tuple[dict, dict]:
        """The snapshot message (header, arrays); see kdiff.attach.snapshot for its layout."""
        from backends.modern_keras.loading import describe_layers, forward_all, input_specs

        loss, output_grad = self.loss_and_output_gradient(x, y)
        layers = describe_layers(self.model)
        ops = self._ops()
        arrays = {"model_file": self._saved_model(), "x": x, "y": y, "output_grad": output_grad}
        for index, (name, outputs) in enumerate(forward_all(self.model, [x])):
            arrays.update({f"o{index}.{k}": np.asarray(out) for k, out in enumerate(outputs)})
        weight_names = {}
        for index, (name, output_grads, weight_grads) in enumerate(ops.backward([x], [output_grad])):
            arrays.update({f"g{index}.{k}": np.asarray(g) for k, g in enumerate(output_grads)})
            arrays.update({f"wg{index}.{k}": np.asarray(g) for k, (_, g) in enumerate(weight_grads)})
            weights = ops.weights(name)
            arrays.update({f"w{index}.{k}": value for k, (_, value) in enumerate(weights)})
            weight_names[name] = [weight for weight, _ in weights]
        slots = self._optimizer_slots()
        arrays.update({f"s{k}": value for k, (_, value) in enumerate(slots)})
        header = {"type": "snapshot", "step": step, "loss": json_number(loss), "backend": self.backend,
                  "versions": self._versions(), "device": self._device(),
                  "layers": [{**layer, "weights": weight_names.get(layer["name"], [])} for layer in layers],
                  "inputs": input_specs(self.model), "optimizer_slots": [name for name, _ in slots]}
        return header, arrays

    def _ops(self):
        if self._layer_ops is None:
            from backends.modern_keras.layer_ops import LayerOps

            self._layer_ops = LayerOps(self.keras, self.model, self.gradients)
        return self._layer_ops

    def _saved_model(self) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="kdiff-probe-") as folder:
            path = Path(folder) / "model.keras"
            self.model.save(str(path))
            return np.frombuffer(path.read_bytes(), dtype=np.uint8)

    def _optimizer_slots(self) -> list[tuple[str, np.ndarray]]:
        optimizer = getattr(self.model, "optimizer", None)
        variables = getattr(optimizer, "variables", None) if optimizer is not None else None
        variables = variables() if callable(variables) else variables or []
        return [(getattr(v, "path", None) or v.name, np.array(_numpy(v))) for v in variables]

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


def json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: those go as "nan", "inf", "-inf"."""
    return value if math.isfinite(value) else str(value)


def _loss_gradient(backend: str, keras, loss_fn, y: np.ndarray, y_pred: np.ndarray):
    """(mean loss, d loss / d y_pred) with the backend's own autodiff."""
    if backend in ("tensorflow", "tf-keras"):
        import tensorflow as tf

        prediction = tf.convert_to_tensor(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(prediction)
            loss = tf.reduce_mean(loss_fn(tf.convert_to_tensor(y), prediction))
        return loss.numpy(), tape.gradient(loss, prediction).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        loss, grad = jax.value_and_grad(lambda p: jnp.mean(loss_fn(jnp.asarray(y), p)))(jnp.asarray(y_pred))
        return np.asarray(loss), np.asarray(grad)
    import torch

    prediction = keras.ops.convert_to_tensor(y_pred).detach().requires_grad_(True)
    loss = torch.mean(loss_fn(keras.ops.convert_to_tensor(y), prediction))
    (grad,) = torch.autograd.grad(loss, [prediction])
    return loss.detach().cpu().numpy(), grad.detach().cpu().numpy()
