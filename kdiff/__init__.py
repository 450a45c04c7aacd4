"""kdiff: a layer-by-layer activation diff profiler for neural networks across backends.

Importing kdiff imports no deep-learning framework and no UI library: the wire format
(kdiff.protocol.wire) is also used inside the backend workers' own environments.
"""
__version__ = "0.1.0"

__all__ = ["compare", "Session"]


def __getattr__(name):  # kdiff.compare, kdiff.Session: the engine is imported only when they are used
    if name in ("compare", "Session"):
        from kdiff import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdiff' has no attribute {name!r}")
