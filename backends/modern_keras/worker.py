"""The worker for Keras 3 (any backend) and tf_keras; each backend folder subclasses it."""
from __future__ import annotations

import os

from backends.common.keras_worker import KerasWorker


class ModernKerasWorker(KerasWorker):
    keras_backend = ""      # KERAS_BACKEND for Keras 3; "" for tf_keras
    keras_module = "keras"  # the module to import as `keras`

    def _import_framework_impl(self) -> None:
        if self.keras_backend:
            os.environ["KERAS_BACKEND"] = self.keras_backend
        import importlib

        from backends import registry

        self.keras = importlib.import_module(self.keras_module)
        self.gradients = registry.backend(self.backend).module("gradients")
        from backends.modern_keras import loading

        self.loading = loading

    def _load_impl(self, model, weights, custom_objects, trust_lambda_bytecode):
        from backends.modern_keras.layer_ops import LayerOps

        loaded = self.loading.load_model(self.keras, model, weights, custom_objects, trust_lambda_bytecode,
                                         self.options.get("layout") or None)
        self.layer_ops = LayerOps(self.keras, loaded, self.gradients)
        return loaded

    def _forward_backward_impl(self, inputs, projections, loss, targets):
        return self.layer_ops.forward_backward(inputs, projections, loss, targets)

    def _layer_config_impl(self, layer):
        from kdiff.protocol.json_values import json_safe

        return json_safe(self._model.get_layer(layer).get_config())

    def _run_layer_changed_impl(self, layer, inputs, overrides, training, weights):
        from backends.modern_keras.layer_changes import run_changed

        return run_changed(self.layer_ops, layer, inputs, overrides, training, weights)

    def _change_layer_impl(self, layer, overrides, training, weights):
        from backends.modern_keras.layer_changes import rebuilt_with_change
        from backends.modern_keras.layer_ops import LayerOps

        rebuilt = rebuilt_with_change(self.keras, self._model, layer, overrides, training, weights)
        self.layer_ops = LayerOps(self.keras, rebuilt, self.gradients)
        return rebuilt

    def _save_impl(self, directory):
        from backends.modern_keras.saving import save_model

        return save_model(self.keras, self._model, directory)
