"""Errors a worker raises about what the user gave it (not about itself).

The worker sends these back to the coordinator as plain data; the coordinator turns them
into exit status 2 ("bad input"), every other exception into exit status 3 ("worker failed").
"""
from __future__ import annotations


class ModelInputError(Exception):
    """The model, weights or sample the user gave cannot be used as they are."""

    code = "bad-model-input"

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UnsupportedLayerError(ModelInputError):
    """The model uses a layer kdiff cannot build on this backend yet."""

    code = "unsupported-layer"

    def __init__(self, layer_class: str, layer_name: str = "", hint: str = ""):
        where = f" (layer '{layer_name}')" if layer_name else ""
        super().__init__(
            f"not supported yet: {layer_class}{where}",
            hint or "kdiff cannot translate this layer yet; please open an issue with the model file.",
        )
        self.layer_class = layer_class


class LambdaBytecodeError(ModelInputError):
    """A Lambda layer's function exists only as marshalled bytecode in the file."""

    code = "lambda-bytecode"

    def __init__(self, layer_name: str, function_name: str = ""):
        name = f" '{function_name}'" if function_name else ""
        super().__init__(
            f"Lambda layer '{layer_name}' stores its function{name} as marshalled bytecode; "
            "kdiff does not run code from model files",
            "supply the function with --custom-objects FILE.py (a function named as in the "
            "file, or named after the layer), or pass --trust-lambda-bytecode if you trust "
            "this file and it was written by Python 3.11",
        )
        self.layer_name = layer_name
