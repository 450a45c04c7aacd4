"""Theano backend worker: Theano-era Keras (1.2.2, 2.3.1) on theano-pymc."""
