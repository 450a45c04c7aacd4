"""Side B's worker seen in side A's layout: arrays from side A going to side B (a layer's
inputs, the sample) are moved to B's layout, and what B sends back is moved to A's. The
diagnosis and the isolation runs use it as they would side B's own client."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdiff.layouts import LayoutBridge
from kdiff.model_inputs import ModelInputs
from kdiff.worker_calls import SideClient


@dataclass(frozen=True)
class LayoutClient:
    client: SideClient
    bridge: LayoutBridge
    inbound: dict          # side B's layer -> the names of what feeds it on side B ('input:NAME' for inputs)

    @property
    def side(self) -> str:
        return self.client.side

    def _inputs_to_b(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        sources = self.inbound.get(layer, [])
        return [self.bridge.to_b(source, [x])[0] if i < len(sources) and (source := sources[i]) else x
                for i, x in enumerate(inputs)]

    def run_layer(self, layer: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.bridge.to_a(layer, self.client.run_layer(layer, self._inputs_to_b(layer, inputs)))

    def run_layer_changed(self, layer: str, inputs: list[np.ndarray], overrides: dict, training: bool | None,
                          weights: list[np.ndarray] | None = None) -> list[np.ndarray]:
        outputs = self.client.run_layer_changed(layer, self._inputs_to_b(layer, inputs), overrides, training, weights)
        return self.bridge.to_a(layer, outputs)

    def layer_backward(self, layer: str, inputs: list[np.ndarray], output_gradients: list[np.ndarray]):
        """The backward alone on side A's values in B's layout; the input gradients back in A's (the
        weights' gradients are side B's own, as its weights are)."""
        input_grads, weight_grads = self.client.layer_backward(layer, self._inputs_to_b(layer, inputs),
                                                               self.bridge.to_b(layer, output_gradients))
        sources = self.inbound.get(layer, [])
        return ([self.bridge.to_a(sources[i], [g])[0] if i < len(sources) else g for i, g in enumerate(input_grads)],
                weight_grads)

    def output_gradients(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        return {layer: self.bridge.to_a(layer, arrays) for layer, arrays in self.client.output_gradients(layers).items()}

    def outputs(self, layers: list[str]) -> dict[str, list[np.ndarray]]:
        return {layer: self.bridge.to_a(layer, arrays) for layer, arrays in self.client.outputs(layers).items()}

    def self_check(self, sample: "np.ndarray | list | ModelInputs") -> dict[str, float]:
        return self.client.self_check(ModelInputs.of(sample, self.bridge).b)

    def __getattr__(self, name):  # weights, set_weights, save, layer_config, change_layer: layout-free
        return getattr(self.client, name)
