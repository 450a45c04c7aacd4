"""Training steps with the optimizers and losses of the Keras that wrote the file (1.2.2 or
2.3.1) on Theano: ``keras.optimizers.Adam`` etc., whose own ``get_updates`` builds the update
graph, compiled into a ``K.function`` that takes the gradients as inputs.

Inference mode throughout (the worker fixes the learning phase at 0): Dropout passes its input
through and BatchNormalization normalises with its moving statistics; each step updates those
from the batch with the layer's own training-mode rule (``training_statistics.py``). The
optimizer setting ``iterations`` sets the optimizer's step counter (a variable in Keras 1 and 2
alike) after it is built, e.g. a resumed optimizer's."""
from __future__ import annotations

import numpy as np

from backends.common.errors import ModelInputError
from backends.original_keras.graph import functional_graph, model_layers
from backends.original_keras.training_statistics import MovingStatistics
from backends.common.training_common import (StepResult, check_settings, optimizer_class_name, pop_iterations,
                                             trial_settings, update_of)

# The slots each optimizer keeps per weight, in the order its get_updates creates them
# (Keras 2 Adam's 'vhat' holds a placeholder of shape (1,) unless amsgrad is on).
SLOT_KINDS = {"SGD": ["momentum"], "Adam": ["m", "v", "vhat"], "RMSprop": ["v"], "Adagrad": ["v"],
              "Adadelta": ["v", "delta"], "Adamax": ["m", "u"], "Nadam": ["m", "v"]}


class Trainer:
    def __init__(self, worker, optimizer: str, config: dict, loss: str):
        import keras
        from keras import backend as K

        self.keras1 = keras.__version__.startswith("1.")
        self.model = worker.model
        self.worker_backend = worker.backend
        self.class_name = optimizer_class_name(optimizer)
        check_settings(config)
        self.config = self._framework_config(config)
        self.optimizer = self._make_optimizer(self.config)
        self.trainable = _trainable_weights(self.model)
        self.params = [weight.pop("variable") for weight in self.trainable]
        self.gradient_inputs = [K.placeholder(shape=K.int_shape(p), dtype=K.dtype(p)) for p in self.params]
        self.apply_function = self._compile_apply(self.optimizer)
        self.loss_function = self._compile_loss(loss)
        self.statistics = MovingStatistics(self.model, self.keras1)
        self.inputs = None
        self.own_gradients = None
        self.snapshot = None   # (weights, optimizer weights, gradients) as the last step started

    def describe(self) -> dict:
        return {"optimizer": self.class_name, "config": _canonical_config(self.optimizer.get_config()),
                "trainable": self.trainable, "slots": list(self._slots(self.optimizer)),
                "iterations": self._iterations(self.optimizer), "statistics": self.statistics.describe()}

    def loss_and_output_gradients(self, inputs: list, targets: list) -> tuple[float, list]:
        from keras import backend as K

        self.inputs = list(inputs)
        graph = functional_graph(self.model)
        predictions = K.function(list(graph.inputs), list(graph.outputs))(list(inputs))
        if len(targets) != len(predictions):
            raise ModelInputError(f"the model has {len(predictions)} output(s) but {len(targets)} target array(s) "
                                  "were given", "pass one Y array per model output")
        loss, *grads = self.loss_function(list(targets) + list(predictions))
        return float(loss), grads

    def apply(self, gradients: list) -> StepResult:
        from keras import backend as K

        statistics = self.statistics.step(self.inputs)   # from the batch, with the weights the step started from
        before = [p.get_value() for p in self.params]
        self.snapshot = (before, K.batch_get_value(self.optimizer.weights), gradients)
        slots_before, iterations_before = self._slots(self.optimizer), self._iterations(self.optimizer)
        self.apply_function(list(gradients))
        return StepResult([update_of(b, p.get_value()) for b, p in zip(before, self.params)],
                          slots_before, self._slots(self.optimizer), iterations_before,
                          self._iterations(self.optimizer), statistics)

    def trial(self, overrides: dict, formula: str | None, layers: dict | None = None) -> tuple[list, list]:
        """(the trainable weights' updates, the moving statistics' updates) of the last step re-run."""
        from keras import backend as K

        if formula is not None:
            raise ModelInputError(f"the theano worker runs only its own Keras's update formulas, not {formula!r}",
                                  "re-run the step on the other side")
        overrides, iterations, (weights_before, optimizer_state, gradients) = trial_settings(self.snapshot, overrides,
                                                                                            layers)
        # Keras 1/2's Adagrad takes no initial_accumulator_value (its accumulators start at 0): the
        # step re-run is the first, so its accumulators are set to the value asked for instead
        initial_accumulator = overrides.pop("initial_accumulator_value", None)
        if initial_accumulator is not None and self.class_name != "Adagrad":
            raise ModelInputError(f"{self.class_name} keeps no accumulator to start at {initial_accumulator!r}",
                                  "leave initial_accumulator_value out for this optimizer")
        optimizer = self._make_optimizer({**self._framework_config(_canonical_config(self.optimizer.get_config())),
                                          **self._framework_config(overrides)})
        function = self._compile_apply(optimizer)
        current = [p.get_value() for p in self.params]
        K.batch_set_value(list(zip(optimizer.weights, optimizer_state)))
        if iterations is not None:
            _set_iterations(optimizer, iterations)
        if initial_accumulator is not None:
            K.batch_set_value([(variable, np.full(value.shape, initial_accumulator, dtype=value.dtype))
                               for variable, value in zip(self._slot_variables(optimizer), self._slots(optimizer)["v"])])
        try:
            K.batch_set_value(list(zip(self.params, weights_before)))
            function(list(gradients))
            updates = [update_of(b, p.get_value()) for b, p in zip(weights_before, self.params)]
        finally:
            K.batch_set_value(list(zip(self.params, current)))
        return updates, self.statistics.trial(layers or {})

    # ---- building ---------------------------------------------------------------------
    def _framework_config(self, config: dict) -> dict:
        """kdiff's canonical 'learning_rate' is Keras 1's 'lr'."""
        if self.keras1 and "learning_rate" in config:
            config = {("lr" if key == "learning_rate" else key): value for key, value in config.items()}
        return config

    def _make_optimizer(self, config: dict):
        import keras

        config = {key: value for key, value in config.items() if key != "name"}
        iterations = pop_iterations(config)
        try:
            optimizer = getattr(keras.optimizers, self.class_name)(**config)
        except TypeError as exc:
            raise ModelInputError(f"Keras {keras.__version__}'s {self.class_name} does not take these settings: "
                                  f"{exc}", "name settings as this Keras's optimizer does (e.g. epsilon=1e-8)") from exc
        if iterations is not None:
            _set_iterations(optimizer, iterations)
        return optimizer

    def _compile_apply(self, optimizer):
        """K.function(gradients) -> [] running the optimizer's own updates on the given gradients."""
        from keras import backend as K

        optimizer.get_gradients = lambda loss, params: list(self.gradient_inputs)
        if self.keras1:
            updates = optimizer.get_updates(self.params, {}, None)
        else:
            updates = optimizer.get_updates(loss=None, params=self.params)
        return K.function(list(self.gradient_inputs), [], updates=updates)

    def _compile_loss(self, name: str):
        """(targets + predictions) -> [loss, d loss / d prediction...], the loss being the batch mean
        of Keras's loss function, summed over the model's outputs (the backend's training.py compiles it)."""
        from backends import registry
        from backends.original_keras.objectives import loss_function

        return registry.backend(self.worker_backend).module("training").loss_and_output_gradients_function(
            loss_function(name, self.keras1), list(functional_graph(self.model).outputs))

    # ---- reading the optimizer's state ----------------------------------------------------
    @staticmethod
    def _slot_variables(optimizer) -> list:
        """The optimizer's per-weight slots, in order: its weights but the step counter (and Keras
        2.3.1 Nadam's m_schedule, one scalar)."""
        scalars = {id(getattr(optimizer, name, None)) for name in ("iterations", "m_schedule")}
        return [w for w in optimizer.weights if id(w) not in scalars]

    def _slots(self, optimizer) -> dict:
        from keras import backend as K

        values = K.batch_get_value(self._slot_variables(optimizer))
        count, slots = len(self.params), {}
        for position, kind in enumerate(SLOT_KINDS.get(self.class_name, [])):
            chunk = values[position * count:(position + 1) * count]
            if len(chunk) == count and all(v.shape == p.get_value().shape for v, p in zip(chunk, self.params)):
                slots[kind] = [np.array(v) for v in chunk]
        return slots

    @staticmethod
    def _iterations(optimizer) -> int:
        from keras import backend as K

        return int(K.get_value(optimizer.iterations)) if hasattr(optimizer, "iterations") else 0


def _set_iterations(optimizer, iterations: int) -> None:
    """Keras 1 and 2 optimizers keep their step counter as a variable (float in Keras 1, int64 in 2)."""
    from keras import backend as K

    if not hasattr(optimizer, "iterations"):
        raise ModelInputError(f"{type(optimizer).__name__} keeps no iteration count here",
                              "leave 'iterations' out for this optimizer")
    K.set_value(optimizer.iterations, np.asarray(iterations, dtype=K.dtype(optimizer.iterations)))


def _trainable_weights(model) -> list[dict]:
    """Each trainable weight: its layer, position among the layer's weights, name and shape."""
    found = []
    for layer in model_layers(model):
        trainable = {id(w) for w in layer.trainable_weights}
        for index, variable in enumerate(layer.weights):
            if id(variable) in trainable:
                found.append({"layer": layer.name, "index": index, "name": variable.name,
                              "shape": list(variable.get_value().shape), "variable": variable})
    return found


def _canonical_config(config: dict) -> dict:
    """The optimizer's config with kdiff's names ('learning_rate' for Keras 1's 'lr'), floats as floats."""
    renamed = {("learning_rate" if key == "lr" else key): value for key, value in config.items()}
    return {key: float(value) if isinstance(value, (np.floating, np.integer)) else value
            for key, value in renamed.items()}
