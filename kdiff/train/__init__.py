"""``kdiff train``: training steps side by side.

Both workers start from the same weights (after the forward diagnosis's proven repairs), take
the same batches with their frameworks' real optimizers, and every step's loss, activations,
gradients, optimizer slots, weight updates and BatchNormalization moving-statistics updates
are compared. Where the updates first diverge, each side's update is solved for its optimizer's
settings (``fitting.py``) and its layers' momentum (``moving_statistics.py``), and every
difference is proven by re-running that step on side B with side A's setting (``explain.py``).
"""
