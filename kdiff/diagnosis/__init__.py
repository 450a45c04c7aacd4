"""Naming the cause of a divergence and proving it.

A rule (``rules/``) proposes candidate fixes for the layer where a divergence starts; each
candidate is applied to side B's worker and that layer is re-run there on side A's inputs.
Only a candidate that brings the layer's error back within tolerance becomes a finding.
``repair.py`` then keeps the fix and looks for the next divergence, until the models agree or
nothing explains what is left.
"""
