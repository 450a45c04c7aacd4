"""The registry of diagnosis rules, in the order they are tried: those that read the configs or
propose a handful of candidates first, the broad searches over permutations last.

A rule is a module with ``ID`` (stable, kebab-case) and ``candidates(evidence)`` yielding
``Candidate`` objects; it proposes, and ``repair.py`` decides by re-running the layer."""
from kdiff.diagnosis.rules import (activation_definition, batchnorm_epsilon, batchnorm_folded_epsilon,
                                   batchnorm_moving_stats, batchnorm_training_mode, conv_kernel_flip, flatten_order,
                                   float_precision, framework_avgpool_same, framework_bias_add,
                                   framework_layernorm_axis, kernel_layout,
                                   padding_same_asymmetry, rnn_gate_order, rnn_reset_after)

RULES = (float_precision, batchnorm_epsilon, batchnorm_training_mode, batchnorm_moving_stats, batchnorm_folded_epsilon,
         activation_definition, conv_kernel_flip, padding_same_asymmetry, framework_bias_add, framework_avgpool_same,
         framework_layernorm_axis,
         flatten_order, rnn_gate_order, rnn_reset_after, kernel_layout)
