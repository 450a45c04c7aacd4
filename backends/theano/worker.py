"""The original Keras (2.3.1, or 1.2.2 for Keras 1 files) on theano-pymc."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from backends import registry
from backends.common.keras_worker import KerasWorker


class Worker(KerasWorker):
    backend = "theano"

    def _import_framework_impl(self) -> None:
        from backends.original_keras import compat

        compat.configure_theano(self.options.get("compiledir") or str(Path.home() / ".cache" / "kdiff" / "theano"))
        # Which Keras runs is decided by the environment (2.3.1 or 1.2.2); its shims go in first.
        compat.prepare_keras(int(metadata.version("keras").split(".")[0]))
        import keras  # noqa: F401

    def _versions_impl(self) -> dict:
        import keras
        import theano

        return {"keras": keras.__version__, "theano": theano.__version__}

    def _load_impl(self, model, weights, custom_objects, trust_lambda_bytecode):
        from backends.original_keras import loading
        from backends.original_keras.layer_ops import LayerOps

        self.loading = loading
        text, weights = loading.read_model_file(model, weights)  # (a full-model .h5 holds both)
        loaded = loading.load_model(text, weights, custom_objects, trust_lambda_bytecode)
        self.layer_ops = LayerOps(loaded, registry.backend(self.backend).module("gradients"))
        return loaded

    def _layer_config_impl(self, layer):
        return self.layer_ops.config(layer)
