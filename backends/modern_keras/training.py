"""Training steps with the optimizers and losses of Keras 3 (any backend) or tf_keras:
``keras.optimizers.Adam`` etc. with their defaults, applying gradients through
``apply_gradients``; the loss's gradient with respect to the model outputs comes from the
backend's own autodiff (``backends/<backend>/training.py``).

Inference mode throughout: Dropout passes its input through and BatchNormalization normalises
with its moving statistics; each step updates those from the batch with the layer's own
training-mode rule (``training_statistics.py``). The optimizer setting ``iterations`` (not a
constructor argument) sets the built optimizer's step counter, e.g. a resumed optimizer's."""
from __future__ import annotations

from backends import registry

import numpy as np

from backends.common.errors import ModelInputError
from backends.modern_keras.objectives import loss_function
from backends.modern_keras.graph import layer_calls
from backends.modern_keras.training_statistics import MovingStatistics
from backends.common.training_common import (StepResult, check_settings, optimizer_class_name, pop_iterations,
                                             trial_settings, update_of)

# Where each optimizer keeps its per-weight slots, and kdiff's name for each kind
SLOT_ATTRIBUTES = {"_momentums": "m", "_m": "m", "_velocities": "v", "_velocity_hats": "vhat", "_accumulators": "v",
                   "_accumulated_grads": "v", "_accumulated_delta_vars": "delta", "_average_gradients": "mean_grad",
                   "momentums": "momentum", "_u": "u"}
# The update formula of Keras 1/2 where Keras 3's differs: epsilon added after the square root
# (RMSprop, Adagrad), Nadam's momentum schedule 0.96^(0.004·t) (Keras 3: 0.96^t)
KERAS2_FORMULAS = ("RMSprop", "Adagrad", "Nadam")


class Trainer:
    def __init__(self, worker, optimizer: str, config: dict, loss: str):
        self.keras = worker.keras
        self.model = worker.model
        self.backend_training = registry.backend(worker.backend).module("training")
        self.class_name = optimizer_class_name(optimizer)
        check_settings(config)
        config = dict(config)
        iterations = pop_iterations(config)
        self.optimizer = self._make_optimizer(self.class_name, config)
        self.trainable, self.variables = _trainable_weights(self.model)
        self.optimizer.build(self.variables)
        if iterations is not None:
            self.optimizer.iterations.assign(iterations)
        self.statistics = MovingStatistics(self.keras, self.model, self.backend_training.to_tensor)
        self.inputs = None
        self.loss_of = loss_function(self.keras, loss)
        self.own_gradients = None
        self.snapshot = None   # (weights, optimizer variables, gradients) as the last step started

    def describe(self) -> dict:
        config = {key: _plain(value) for key, value in self.optimizer.get_config().items()}
        return {"optimizer": self.class_name, "config": config, "trainable": self.trainable,
                "slots": list(self._slots(self.optimizer)), "iterations": self._iterations(self.optimizer),
                "statistics": self.statistics.describe()}

    def loss_and_output_gradients(self, inputs: list, targets: list) -> tuple[float, list]:
        self.inputs = list(inputs)
        predictions = self.model.predict_on_batch(inputs[0] if len(inputs) == 1 else inputs)
        predictions = [np.asarray(p) for p in (predictions if isinstance(predictions, (list, tuple)) else [predictions])]
        if len(targets) != len(predictions):
            raise ModelInputError(f"the model has {len(predictions)} output(s) but {len(targets)} target array(s) "
                                  "were given", "pass one Y array per model output")
        loss, grads = self.backend_training.loss_and_output_gradients(self.loss_of, targets, predictions)
        return float(loss), [np.asarray(g) for g in grads]

    def apply(self, gradients: list) -> StepResult:
        statistics = self.statistics.step(self.inputs)   # from the batch, with the weights the step started from
        before = [v.numpy() for v in self.variables]
        self.snapshot = (before, [v.numpy() for v in self.optimizer.variables], gradients)
        slots_before, iterations_before = self._slots(self.optimizer), self._iterations(self.optimizer)
        self._apply(self.optimizer, gradients)
        return StepResult([update_of(b, v.numpy()) for b, v in zip(before, self.variables)], slots_before,
                          self._slots(self.optimizer), iterations_before, self._iterations(self.optimizer),
                          statistics)

    def trial(self, overrides: dict, formula: str | None, layers: dict | None = None) -> tuple[list, list]:
        """(the trainable weights' updates, the moving statistics' updates) of the last step re-run."""
        overrides, iterations, (weights_before, optimizer_state, gradients) = trial_settings(self.snapshot, overrides,
                                                                                            layers)
        config = {**self.optimizer.get_config(), **overrides}
        if formula is None:
            optimizer = self._make_optimizer(self.class_name, config)
        elif formula == "keras2" and self.class_name in KERAS2_FORMULAS and hasattr(self.keras, "ops"):
            optimizer = _keras2_formula(self.keras, self.class_name).from_config(config)
        else:
            raise ModelInputError(f"kdiff has no {formula!r} formula of {self.class_name} for {self.keras.__name__}",
                                  f"kdiff knows Keras 2's formula of {', '.join(KERAS2_FORMULAS)} for Keras 3")
        optimizer.build(self.variables)
        learning_rate = getattr(optimizer, "_learning_rate", None)
        for variable, value in zip(optimizer.variables, optimizer_state):
            if variable is not learning_rate:
                variable.assign(value)
        if iterations is not None:
            optimizer.iterations.assign(iterations)
        if "initial_accumulator_value" in overrides and hasattr(optimizer, "_accumulators"):
            # the step re-run is the first: its accumulators start at the value asked for
            for accumulator in optimizer._accumulators:
                accumulator.assign(np.full(accumulator.shape, overrides["initial_accumulator_value"],
                                           dtype=accumulator.dtype))
        current = [v.numpy() for v in self.variables]
        try:
            for variable, value in zip(self.variables, weights_before):
                variable.assign(value)
            self._apply(optimizer, gradients)
            updates = [update_of(b, v.numpy()) for b, v in zip(weights_before, self.variables)]
        finally:
            for variable, value in zip(self.variables, current):
                variable.assign(value)
        return updates, self.statistics.trial(layers or {})

    def _make_optimizer(self, class_name: str, config: dict):
        optimizers = self.keras.optimizers
        try:
            return getattr(optimizers, class_name).from_config(config)
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"{self.keras.__name__} {self.keras.__version__}'s {class_name} does not take "
                                  f"these settings: {exc}", "name settings as Keras 3 does (e.g. learning_rate=0.01)"
                                  ) from exc

    def _apply(self, optimizer, gradients: list) -> None:
        tensors = [self.backend_training.to_tensor(g) for g in gradients]
        optimizer.apply_gradients(list(zip(tensors, self.variables)))

    def _slots(self, optimizer) -> dict:
        slots = {}
        for attribute, kind in SLOT_ATTRIBUTES.items():
            values = getattr(optimizer, attribute, None)
            if isinstance(values, list) and len(values) == len(self.variables) and kind not in slots:
                slots[kind] = [np.array(v.numpy()) for v in values]
        return slots

    @staticmethod
    def _iterations(optimizer) -> int:
        return int(np.asarray(optimizer.iterations.numpy()))


def _trainable_weights(model) -> tuple[list[dict], list]:
    """Each trainable weight (layer, position among the layer's weights, name, shape), and the variables."""
    trainable = {id(v) for v in model.trainable_weights}
    found, variables = [], []
    for layer, _, _ in layer_calls(model):
        for index, variable in enumerate(layer.weights):
            if id(variable) in trainable:
                path = getattr(variable, "path", None)
                found.append({"layer": layer.name, "index": index,
                              "name": path if isinstance(path, str) else variable.name.removesuffix(":0"),
                              "shape": [int(d) for d in variable.shape]})
                variables.append(variable)
    return found, variables


def _plain(value):
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def _keras2_formula(keras, class_name: str):
    """Keras 3's optimizer with the update Keras 1/2 made: ``lr * g / (sqrt(v) + epsilon)``
    where Keras 3 computes ``lr * g / sqrt(v + epsilon)`` (RMSprop without momentum, Adagrad);
    Nadam with Keras 1/2's momentum schedule (``_keras2_nadam``)."""
    ops = keras.ops
    base = getattr(keras.optimizers, class_name)
    if class_name == "Nadam":
        return _keras2_nadam(keras)

    class Keras2Formula(base):
        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            index = self._get_variable_index(variable)
            if class_name == "RMSprop":
                velocity = self._velocities[index]
                self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                              ops.multiply(1 - self.rho, ops.square(gradient))))
            else:
                velocity = self._accumulators[index]
                self.assign_add(velocity, ops.square(gradient))
            self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                                 ops.add(ops.sqrt(velocity), self.epsilon)))

    Keras2Formula.__name__ = f"Keras2{class_name}"
    return Keras2Formula


def _keras2_nadam(keras):
    """Keras 3's Nadam with Keras 1/2's momentum schedule μₜ = β₁·(1 - ½·0.96^(schedule_decay·t))
    (schedule_decay 0.004; Keras 3 has 0.96^t): the same update otherwise (m, v, Πₜ in ``_u_product``)."""
    ops = keras.ops
    base = keras.optimizers.Nadam

    class Keras2Nadam(base):
        def __init__(self, *args, schedule_decay=0.004, **kwargs):
            super().__init__(*args, **kwargs)
            self.schedule_decay = schedule_decay

        def _mu(self, step, dtype):
            return ops.cast(self.beta_1, dtype) * (1.0 - 0.5 * ops.power(ops.cast(0.96, dtype),
                                                                         step * self.schedule_decay))

        def _backend_update_step(self, grads, trainable_variables, learning_rate):
            dtype = self._u_product.dtype
            self.assign(self._u_product, self._u_product * self._mu(ops.cast(self.iterations + 1, dtype), dtype))
            super(base, self)._backend_update_step(grads, trainable_variables, learning_rate)

        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype
            lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
            t = ops.cast(self.iterations + 1, dtype)
            u_t, u_next = self._mu(t, dtype), self._mu(t + 1, dtype)
            product = ops.cast(self._u_product, dtype)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
            index = self._get_variable_index(variable)
            m, v = self._momentums[index], self._velocities[index]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
            m_hat = ops.add(ops.divide(ops.multiply(u_next, m), 1 - product * u_next),
                            ops.divide(ops.multiply(1 - u_t, gradient), 1 - product))
            v_hat = ops.divide(v, 1 - ops.power(beta_2, t))
            self.assign_sub(variable, ops.divide(ops.multiply(m_hat, lr), ops.add(ops.sqrt(v_hat), self.epsilon)))

        def get_config(self):
            return {**super().get_config(), "schedule_decay": self.schedule_decay}

    return Keras2Nadam
