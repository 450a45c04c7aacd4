"""Backend workers: one package per backend, each run inside its own virtual environment.

Nothing in this package imports a deep-learning framework at import time; each worker
imports its framework when it starts serving.
"""
