"""The registry of diagnosis rules, in the order they are tried.

A rule is a module with ``ID`` (stable, kebab-case) and ``candidates(evidence)`` yielding
``Candidate`` objects; it proposes, and ``verify.py`` decides."""
from kdiff.diagnosis.rules import conv_kernel_flip, flatten_order, kernel_layout

WEIGHT_RULES = (conv_kernel_flip, kernel_layout, flatten_order)
