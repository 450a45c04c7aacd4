"""Which modules make each backend: one table, instead of module names put together from strings.

Every backend folder has the same modules (the template): ``worker.py`` (its ``Worker``, a
subclass of its family's worker), ``gradients.py`` (how its framework differentiates),
``training.py`` (its framework's part of a training step) and ``capture.py`` (what the in-job
probe runs inside a training job of that framework). A family package holds what its
backends share: ``modern_keras`` (Keras 3 on any backend, and tf_keras) and
``original_keras`` (Keras 1.2.2 and 2.3.1 on Theano); ``common`` what every backend shares.
Modules are imported only when asked for: a framework is imported only in its own worker."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Backend:
    name: str     # as the command line and the coordinator's environments name it
    package: str  # backends/<package>/: worker.py, gradients.py, training.py, capture.py
    family: str   # backends/<family>/: the code it shares with the backends of its kind

    def module(self, role: str) -> ModuleType:
        """One of the backend's template modules: "worker", "gradients", "training" or "capture"."""
        if role not in TEMPLATE:
            raise ValueError(f"a backend has no {role!r} module; it has {', '.join(TEMPLATE)}")
        return importlib.import_module(f"backends.{self.package}.{role}")

    def family_module(self, name: str) -> ModuleType:
        return importlib.import_module(f"backends.{self.family}.{name}")

    def worker_class(self) -> type:
        return self.module("worker").Worker

    def trainer_class(self) -> type:
        """The family's trainer; it takes the framework's part from the backend's training.py."""
        return self.family_module("training").Trainer


TEMPLATE = ("worker", "gradients", "training", "capture")

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (
    Backend("theano", "theano", "original_keras"),
    Backend("tensorflow", "tensorflow", "modern_keras"),
    Backend("jax", "jax", "modern_keras"),
    Backend("torch", "torch", "modern_keras"),
    Backend("tf-keras", "tf_keras", "modern_keras"),
)}


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
    return BACKENDS[name]
