"""The part every Keras worker shares: its model is loaded through a ``loading`` module
(describe_layers, input_specs, forward_all) and worked on through a ``layer_ops`` object
(weights, set_weights, run, backward, layer_backward), both set by the subclass's ``_load_impl``."""
from __future__ import annotations

from backends.common.worker_base import Worker


class KerasWorker(Worker):
    loading = None    # the backend's model-loading module
    layer_ops = None  # the backend's per-layer operations on the loaded model

    def _describe_layers_impl(self) -> list[dict]:
        return self.loading.describe_layers(self._model)

    def _input_specs_impl(self) -> list[dict]:
        return self.loading.input_specs(self._model)

    def _forward_impl(self, inputs):
        return self.loading.forward_all(self._model, inputs)

    def _layer_weights_impl(self, layer):
        return self.layer_ops.weights(layer)

    def _set_layer_weights_impl(self, layer, arrays):
        self.layer_ops.set_weights(layer, arrays)

    def _run_layer_impl(self, layer, inputs):
        return self.layer_ops.run(layer, inputs)

    def _backward_impl(self, inputs, projections, loss, targets):
        return self.layer_ops.backward(inputs, projections, loss, targets)

    def _layer_backward_impl(self, layer, inputs, output_gradients):
        return self.layer_ops.layer_backward(layer, inputs, output_gradients)
