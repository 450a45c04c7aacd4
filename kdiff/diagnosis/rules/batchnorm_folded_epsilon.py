"""A BatchNormalization folded into the conv or Dense before it, with another epsilon than the one it
normalised with: a port (or an inference export) that folds Keras's layer, epsilon 1e-3, with PyTorch's
1e-5 or keras_applications' 1.001e-5. The folded kernel is W·γ/√(var + ε'), the bias (b − mean)·γ/√(var + ε')
+ β; against side A's conv + BatchNormalization it is off most in the channels of small variance. A rule of
a group (kdiff.alignment): side A's pair holds the BatchNormalization, side B's does not. Proposed: the fold
redone with side A's epsilon, from each common epsilon it may have been made with (the kernel and the bias
rescaled per channel by √(var + ε') / √(var + ε), so that neither γ nor the mean is needed twice)."""
from __future__ import annotations

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence, kernel_of
from kdiff.element_maps import channel_axes

ID = "batchnorm-folded-epsilon"
FOLD_EPSILONS = (1e-5, 1.001e-5, 1e-3, 1e-4, 1e-6, 1e-8, 0.0)  # PyTorch, keras_applications, Keras, ...
KERAS_EPSILON = 1e-3


def candidates(evidence: LayerEvidence):
    kernel = kernel_of(evidence.b_weights)
    folded = next((name for name, class_name, _ in evidence.a_group if class_name == "BatchNormalization"), None)
    if kernel is None or folded is None or len(evidence.b_weights) != 2 or any(
            class_name == "BatchNormalization" for _, class_name, _ in evidence.b_group):
        return
    statistics = dict(evidence.a_group_weights).get(folded, ())
    variance = next((w for name, w in statistics if "variance" in name or "running_std" in name), None)
    beta = next((w for name, w in statistics if "beta" in name), None)
    bias = evidence.b_weights[1][1]
    if variance is None or bias.shape != variance.shape:
        return
    channels = variance.size
    trailing = channel_axes(kernel.shape, channels)
    if trailing is None:
        return
    config = next(c for name, _, c in evidence.a_group if name == folded)
    epsilon = float(config.get("epsilon", KERAS_EPSILON))
    variance = np.asarray(variance, np.float64)
    shift = np.zeros(channels) if beta is None else np.asarray(beta, np.float64)
    for other in FOLD_EPSILONS:
        if other == epsilon or np.any(variance + other <= 0):
            continue
        ratio = np.sqrt(variance + other) / np.sqrt(variance + epsilon)
        refolded = (kernel * ratio.reshape(kernel.shape[-trailing:])).astype(kernel.dtype)
        rebiased = ((bias - shift) * ratio + shift).astype(bias.dtype)
        yield Candidate(
            cause=ID,
            b_weights=(refolded, rebiased),
            fix=(f"'{evidence.b_layer}' holds '{folded}' folded in with epsilon {other:g}, but '{folded}' normalises "
                 f"with epsilon {epsilon:g}: fold it again with {epsilon:g} (kernel · γ / √(var + {epsilon:g}), "
                 f"bias (b − mean) · γ / √(var + {epsilon:g}) + β)."),
            code=("import numpy as np\n"
                  "# variance, beta: the moving variance and beta of the BatchNormalization that was folded in\n"
                  f'layer = model.get_layer("{evidence.b_layer}")\n'
                  "kernel, bias = layer.get_weights()\n"
                  f"ratio = np.sqrt(variance + {other!r}) / np.sqrt(variance + {epsilon!r})\n"
                  "layer.set_weights([kernel * ratio, (bias - beta) * ratio + beta])"),
        )
