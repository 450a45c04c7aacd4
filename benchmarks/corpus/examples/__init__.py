"""Model definitions copied from the examples/ folder of Keras 2.3.1's source distribution (keras==2.3.1 on
PyPI, MIT licensed: LICENSE-keras here). Each module keeps an example's model-building code as written and
drops its data loading, compiling and training; the values the example took from its dataset are constants,
named as the example names them. ``build(keras, data_format)`` returns what benchmarks/corpus/generate.py
needs (see there). They run inside the Theano environment of Keras 2.3.1."""
