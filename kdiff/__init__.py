"""kdiff: a layer-by-layer activation diff profiler for neural networks across backends.

Importing kdiff imports no deep-learning framework and no UI library: the wire format
(kdiff.protocol.wire) is also used inside the backend workers' own environments.
"""
__version__ = "0.1.0"
