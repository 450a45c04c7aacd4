"""The base class of every backend worker.

Public methods check the worker's state and the caller's arguments, then call the
``_..._impl`` hooks that each backend fills in. Frameworks are imported in
``_import_framework_impl``, never at module import time.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from backends.common.errors import ModelInputError


class Worker:
    backend = ""  # the backend's name, as the coordinator knows it

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})
        self._started = False
        self._model = None
        self._input_specs: list[dict] = []
        self._layer_names: set[str] = set()
        self._last_outputs: dict[str, list[np.ndarray]] = {}
        self._last_output_gradients: dict[str, list[np.ndarray]] = {}  # the last backward's, for 'outputs'
        self._trainer = None  # the training step's state once 'compile_optimizer' came (kdiff train)
        # A listening worker's sessions (backends.listen): the files' digest the model was loaded from, while
        # the model can still be given back as loaded (only weights set since, and their first values kept)
        self._reuse_key: str | None = None
        self._description: dict | None = None
        self._original_weights: dict[str, list[np.ndarray]] = {}
        self.reuse_models = False          # set by a listening worker: 'load' passes a reuse_key
        self.files_dir: str | None = None  # where received files and files to send are written (None: the temp folder)

    # ---- public API, called by backends.serve -------------------------------------------
    def start(self) -> dict:
        """Import the framework; returns ``{"versions": {...}, "device": str}`` for the handshake."""
        self._import_framework_impl()
        self._started = True
        return {"versions": self._versions_impl(), "device": self._device_impl()}

    def load(self, model: str, weights: str | None = None, custom_objects: str | None = None,
             trust_lambda_bytecode: bool = False, reuse_key: str | None = None) -> dict:
        """Load the model; with ``reuse_key`` (a digest of the files and flags, from a listening worker), a
        model already loaded from the same is given back as loaded instead: the weights set since are put back."""
        self._require_started()
        if reuse_key is not None and reuse_key == self._reuse_key and self._description is not None:
            for layer, arrays in self._original_weights.items():
                self._set_layer_weights_impl(layer, arrays)
            self._original_weights = {}
            self._trainer, self._last_outputs, self._last_output_gradients = None, {}, {}
            return {**self._description, "reused": True}
        self._reuse_key = self._description = None
        self._original_weights = {}
        self._last_outputs, self._last_output_gradients = {}, {}
        for label, path in (("model", model), ("weights", weights), ("custom objects", custom_objects)):
            if path is not None and not Path(path).is_file():
                raise ModelInputError(f"{label} file not found: {path}", "check the path")
        functions = load_custom_objects(custom_objects, self._custom_objects_keras_impl()) if custom_objects else {}
        try:
            self._model = self._load_impl(model, weights, functions, bool(trust_lambda_bytecode))
        except ModelInputError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, ZeroDivisionError,
                NotImplementedError) as exc:
            raise refused_by_framework(self.backend, exc) from exc
        self._input_specs = self._input_specs_impl()
        layers = self._describe_layers_impl()
        self._layer_names = {layer["name"] for layer in layers}
        self._description = {"layers": layers, "inputs": self._input_specs}
        self._reuse_key = reuse_key
        return self._description

    def end_session(self) -> None:
        """A listening worker's session ended: what it computed goes; the model stays for the next session,
        which reuses it only if loaded from the same files (``load``'s ``reuse_key``)."""
        self._trainer, self._last_outputs, self._last_output_gradients = None, {}, {}

    def forward(self, inputs: list[np.ndarray]) -> Iterator[tuple[str, list[np.ndarray]]]:
        """Every layer's outputs in inference mode, one layer at a time in topological order."""
        self._require_loaded()
        prepared = self.check_inputs(inputs)
        self._last_outputs = {"input:" + spec["name"]: [x] for spec, x in zip(self._input_specs, prepared)}
        for name, outputs in self._forward_impl(prepared):
            outputs = [np.asarray(out) for out in outputs]
            self._last_outputs[name] = outputs  # kept for 'outputs': the diagnosis asks for a few layers again
            yield name, outputs

    def self_check(self, inputs: list[np.ndarray]) -> dict[str, float]:
        """Run the same input twice; the layers whose outputs differ, with the largest difference.

        A side that disagrees with itself runs something stochastic (e.g. dropout left on) or
        non-deterministic; its differences are noise, not a port's fault."""
        first = {name: outputs for name, outputs in self.forward(inputs)}
        differing = {}
        for name, outputs in self.forward(inputs):
            pairs = list(zip(first[name], outputs))
            if all(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc") for a, b in pairs):
                continue
            # NaN or Inf on one run only counts as the largest finite difference (JSON has no inf)
            differing[name] = max(float(np.max(np.nan_to_num(np.abs(a.astype(np.float64) - b), nan=1e300,
                                                             posinf=1e300), initial=0.0)) for a, b in pairs)
        return differing

    def last_outputs(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """Outputs of the given layers (or 'input:NAME' model inputs) from the last forward pass."""
        if not self._last_outputs:
            raise RuntimeError(f"{self.backend} worker: 'outputs' needs a 'forward' first")
        missing = [layer for layer in layers if layer not in self._last_outputs]
        if missing:
            raise ModelInputError(f"no output recorded for {', '.join(missing)}", "use names from the report")
        return {layer: self._last_outputs[layer] for layer in layers}

    def last_output_gradients(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        """d loss / d output of the given layers, from the last backward (or forward_backward) pass."""
        kept = self._last_output_gradients
        if not kept:
            raise RuntimeError(f"{self.backend} worker: 'outputs' of gradients needs a 'backward' first")
        missing = [layer for layer in layers if layer not in kept]
        if missing:
            raise ModelInputError(f"no gradient recorded for {', '.join(missing)}", "use names from the report")
        return {layer: kept[layer] for layer in layers}

    def layer_weights(self, layer: str) -> list[tuple[str, np.ndarray]]:
        """The layer's weights as the framework holds them: (weight name, array) in layer order."""
        self._require_layer(layer)
        return [(name, np.asarray(value)) for name, value in self._layer_weights_impl(layer)]

    def set_layer_weights(self, layer: str, arrays: list[np.ndarray]) -> None:
        current = self.layer_weights(layer)
        if len(arrays) != len(current) or any(a.shape != c.shape for a, (_, c) in zip(arrays, current)):
            raise ModelInputError(
                f"layer '{layer}' holds weights of shapes {[c.shape for _, c in current]}, "
                f"not {[a.shape for a in arrays]}", "pass one array per weight, in the layer's order")
        if self._reuse_key is not None and layer not in self._original_weights:
            self._original_weights[layer] = [np.array(c) for _, c in current]
        self._set_layer_weights_impl(layer, [np.asarray(a, dtype=c.dtype) for a, (_, c) in zip(arrays, current)])

    def run_layer(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One layer alone, in inference mode, on the given inputs (one array per inbound tensor)."""
        self._require_layer(layer)
        return [np.asarray(out) for out in self._run_layer_impl(layer, [np.asarray(x) for x in inputs])]

    def layer_backward(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]
                       ) -> tuple[list[np.ndarray], list[tuple[str, np.ndarray]]]:
        """One layer's backward alone, in inference mode: for loss = sum_k sum(output_k * output_gradients[k])
        of the layer run on ``inputs``, (d loss / d each input, [(weight name, d loss / d weight)]). An input
        that is not floating point (token ids) gets zeros."""
        self._require_layer(layer)
        inputs = [np.asarray(x) for x in inputs]
        input_grads, weight_grads = self._layer_backward_impl(layer, inputs, [np.asarray(g) for g in output_gradients])
        if len(input_grads) != len(inputs):
            raise RuntimeError(f"{self.backend} worker: {len(input_grads)} input gradient(s) for {len(inputs)} inputs")
        return ([np.asarray(g) for g in input_grads], [(name, np.asarray(g)) for name, g in weight_grads])

    def layer_config(self, layer: str) -> dict:
        """The layer's configuration as its framework reports it, made JSON-safe."""
        self._require_layer(layer)
        return self._layer_config_impl(layer)

    def run_layer_changed(self, layer: str, inputs: list[np.ndarray], overrides: dict,
                          training: bool | None, weights: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """A copy of the layer, its config updated with ``overrides``, run alone on the given inputs
        in inference mode, or in ``training`` mode when it is given; the copy holds ``weights`` when
        they are given (a changed config may change their shapes), else the layer's current weights.
        The model itself is left as it is."""
        self._require_layer(layer)
        outputs = self._run_layer_changed_impl(layer, [np.asarray(x) for x in inputs], dict(overrides), training,
                                               _arrays_or_none(weights))
        return [np.asarray(out) for out in outputs]

    def change_layer(self, layer: str, overrides: dict, training: bool | None,
                     weights: list[np.ndarray] | None = None) -> None:
        """Keep such a change in the model: forward passes, layer runs and ``save`` see it from now on."""
        self._require_layer(layer)
        self._reuse_key = None  # the model is not as loaded any more
        self._model = self._change_layer_impl(layer, dict(overrides), training, _arrays_or_none(weights))

    def backward(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None = None,
                 targets: list[np.ndarray] | None = None):
        """Gradients of ``loss = sum_k sum(output_k * projections[k])`` over the model outputs or,
        with ``loss`` (a loss name of the framework's Keras) and one target array per output, of
        the batch mean of that loss summed over the outputs; in inference mode: per layer, with
        respect to its outputs and to each of its weights.

        Yields ``(layer, [d loss / d output], [(weight name, d loss / d weight)])`` in topological order."""
        self._require_loaded()
        prepared = self.check_inputs(inputs)
        targets = None if targets is None else [np.asarray(t) for t in targets]
        self._last_output_gradients = {}
        for name, output_grads, weight_grads in self._backward_impl(prepared, [np.asarray(p) for p in projections],
                                                                    loss, targets):
            yield (name, *self._kept_gradients(name, output_grads, weight_grads))

    def forward_backward(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None = None,
                         targets: list[np.ndarray] | None = None):
        """``forward`` and ``backward`` in one call, from one pass of the model where the framework
        allows: yields ``("output", layer, [outputs])`` for every layer (kept for 'outputs' as
        forward's are), then ``("gradient", layer, [d loss / d output], [(weight name, d loss / d weight)])``
        for every layer, both in topological order."""
        self._require_loaded()
        prepared = self.check_inputs(inputs)
        targets = None if targets is None else [np.asarray(t) for t in targets]
        self._last_outputs = {"input:" + spec["name"]: [x] for spec, x in zip(self._input_specs, prepared)}
        self._last_output_gradients = {}
        for kind, name, *values in self._forward_backward_impl(prepared, [np.asarray(p) for p in projections],
                                                               loss, targets):
            if kind == "output":
                outputs = [np.asarray(out) for out in values[0]]
                self._last_outputs[name] = outputs
                yield kind, name, outputs
            else:
                yield (kind, name, *self._kept_gradients(name, *values))

    def _kept_gradients(self, name: str, output_grads, weight_grads) -> tuple[list, list]:
        """A layer's gradients as numpy, its output gradients kept for 'outputs' (their isolation)."""
        output_grads = [np.asarray(g) for g in output_grads]
        self._last_output_gradients[name] = output_grads
        return output_grads, [(w, np.asarray(g)) for w, g in weight_grads]

    def save(self, directory: str) -> list[str]:
        """Write the model as it is now (repairs included) in the framework's own format; the files written."""
        self._require_loaded()
        Path(directory).mkdir(parents=True, exist_ok=True)
        return [str(path) for path in self._save_impl(directory)]

    # ---- hooks --------------------------------------------------------------------------
    def _import_framework_impl(self) -> None:
        raise NotImplementedError

    def _custom_objects_keras_impl(self):
        """The module that ``import keras`` gives the user's --custom-objects file here (None: the installed
        keras): the tf-keras worker gives tf_keras, which its models are built with."""
        return None

    def _versions_impl(self) -> dict:
        raise NotImplementedError

    def _device_impl(self) -> str:
        return "cpu"

    def _load_impl(self, model: str, weights: str | None, custom_objects: dict, trust_lambda_bytecode: bool):
        raise NotImplementedError

    def _describe_layers_impl(self) -> list[dict]:
        raise NotImplementedError

    def _input_specs_impl(self) -> list[dict]:
        raise NotImplementedError

    def _forward_impl(self, inputs: list[np.ndarray]) -> list[tuple[str, list]]:
        raise NotImplementedError

    def _layer_weights_impl(self, layer: str) -> list[tuple[str, object]]:
        raise NotImplementedError

    def _set_layer_weights_impl(self, layer: str, arrays: list[np.ndarray]) -> None:
        raise NotImplementedError

    def _run_layer_impl(self, layer: str, inputs: list[np.ndarray]) -> list:
        raise NotImplementedError

    def _backward_impl(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None,
                       targets: list[np.ndarray] | None):
        raise NotImplementedError

    def _forward_backward_impl(self, inputs: list[np.ndarray], projections: list[np.ndarray], loss: str | None,
                               targets: list[np.ndarray] | None):
        """By default a forward pass, then a backward pass; a framework whose backward pass keeps
        the layer outputs yields both from one."""
        for name, outputs in self._forward_impl(inputs):
            yield "output", name, outputs
        for name, output_grads, weight_grads in self._backward_impl(inputs, projections, loss, targets):
            yield "gradient", name, output_grads, weight_grads

    def _layer_config_impl(self, layer: str) -> dict:
        raise NotImplementedError

    def _layer_backward_impl(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]):
        raise ModelInputError(f"the {self.backend} worker cannot run a layer's backward alone",
                              "its gradients are compared in the whole model only")

    def _run_layer_changed_impl(self, layer: str, inputs: list[np.ndarray], overrides: dict,
                                training: bool | None, weights: list[np.ndarray] | None) -> list:
        raise ModelInputError(f"the {self.backend} worker cannot run a changed copy of a layer",
                              "diagnose with this backend as side A")

    def _change_layer_impl(self, layer: str, overrides: dict, training: bool | None,
                           weights: list[np.ndarray] | None):
        """The model with the change kept (the same object or a rebuilt one)."""
        raise ModelInputError(f"the {self.backend} worker cannot change a layer's configuration",
                              "diagnose with this backend as side A")

    def _save_impl(self, directory: str) -> list:
        raise ModelInputError(f"kdiff cannot write models for the {self.backend} backend",
                              "write repaired models for tensorflow, jax, torch or tf-keras")

    # ---- training (kdiff train; backends.common.commands.training) -----------------------
    def compile_optimizer(self, optimizer: str, config: dict, loss: str) -> dict:
        """Make the optimizer and loss a training step uses; answers what the trainer describes."""
        self._require_loaded()
        self._reuse_key = None  # training changes the weights (and the optimizer may build state in the model)
        self._trainer = self._trainer_impl(optimizer, dict(config), loss)
        return self._trainer.describe()

    @property
    def trainer(self):
        """The trainer 'compile_optimizer' made: its family's Trainer (backends/<family>/training.py)."""
        if self._trainer is None:
            raise ModelInputError("no optimizer compiled yet", "send 'compile_optimizer' first")
        return self._trainer

    @property
    def model(self):
        """The loaded model, for the trainer."""
        self._require_loaded()
        return self._model

    def _trainer_impl(self, optimizer: str, config: dict, loss: str):
        from backends import registry

        return registry.backend(self.backend).trainer_class()(self, optimizer, config, loss)

    # ---- checks -------------------------------------------------------------------------
    def _require_layer(self, layer: str) -> None:
        self._require_loaded()
        if layer not in self._layer_names:
            raise ModelInputError(f"the model has no layer '{layer}'", "use a layer name from the report")

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{self.backend} worker used before start()")

    def _require_loaded(self) -> None:
        self._require_started()
        if self._model is None:
            raise RuntimeError(f"{self.backend} worker has no model: 'load' must come first")

    def check_inputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The inputs as the model takes them (one per model input, conformed to its spec), or a ModelInputError."""
        specs = self._input_specs
        if len(inputs) != len(specs):
            raise ModelInputError(
                f"the model has {len(specs)} input(s) but {len(inputs)} array(s) were given",
                "pass one sample array per model input",
            )
        return [conform_input(array, spec) for array, spec in zip(inputs, specs)]


def conform_input(array: np.ndarray, spec: dict) -> np.ndarray:
    """The sample as the model input wants it, or a ModelInputError saying what is off."""
    expected = spec.get("shape") or []
    shape = tuple(array.shape)
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
        shown = tuple("batch" if e is None and i == 0 else e for i, e in enumerate(expected))
        raise ModelInputError(
            f"sample has shape {shape} but input '{spec.get('name')}' expects {shown}",
            "save the sample with numpy.save in the model's input shape, batch first",
        )
    dtype = np.dtype(spec.get("dtype") or array.dtype)
    if dtype.kind in "iu" and array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ModelInputError(
                f"input '{spec.get('name')}' takes integer ids ({dtype}) but the sample holds fractional values",
                "save the sample as an integer array of token ids",
            )
    return np.asarray(array, dtype=dtype, order="C")


def refused_by_framework(backend: str, exc: Exception) -> ModelInputError:
    """The framework's own refusal to build the model or load its weights (a layer config it does not
    accept: negative units, a zero kernel, an unknown activation), as the user's input error, with the
    layer named where the message or the traceback names it."""
    import traceback

    import re

    text = str(exc)
    # Keras 3 wraps the real refusal in one "could not be deserialized ... Exception encountered: ..." per level
    classes = re.findall(r"<class '(?:[\w.]+\.)?(\w+)'> could not be deserialized", text)
    innermost = text.rsplit("Exception encountered:", 1)[-1].strip()
    message = f"{type(exc).__name__}: {innermost}" + (f" (in a {classes[-1]} layer)" if classes else "")
    if len(message) > 600:
        message = message[:600] + "..."
    where = next((frame for frame in reversed(traceback.extract_tb(exc.__traceback__))
                  if "/backends/" not in frame.filename), None)
    origin = f" (raised in {Path(where.filename).name}:{where.lineno}, {where.name})" if where else ""
    return ModelInputError(f"{backend} could not build the model or load its weights: {message}",
                           "check that layer's settings in the model file (Keras refuses them as they are); if the "
                           f"file loads in the Keras that wrote it, this is kdiff's fault: please report it{origin}")


def load_custom_objects(path: str, keras_module=None) -> dict:
    """The public callables and classes defined in a user's Python file, by name; with ``keras_module``,
    the file's ``import keras`` gives that module (tf_keras in the tf-keras worker).

    This runs the user's own file, which they named on the command line to supply
    functions (e.g. for Lambda layers) and layer classes; code stored inside model files is never run here.
    """
    if keras_module is None:
        namespace = runpy.run_path(path)
    else:
        installed = sys.modules.get("keras")
        sys.modules["keras"] = keras_module
        try:
            namespace = runpy.run_path(path)
        finally:
            if installed is None:
                sys.modules.pop("keras", None)
            else:
                sys.modules["keras"] = installed
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and callable(value)}


def _arrays_or_none(arrays) -> list[np.ndarray] | None:
    return None if arrays is None else [np.asarray(a) for a in arrays]
