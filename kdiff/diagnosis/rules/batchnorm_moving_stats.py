"""BatchNormalization's moving variance carried over wrongly. Keras 1 called it `running_std`
though it held a variance (a port that believes the name squares it, or takes its root), and
Theano's training path stored variance + ε as the variance, so a Theano-trained model's moving
variance is ε larger than one re-estimated elsewhere."""
from __future__ import annotations

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "batchnorm-moving-stats"


def candidates(evidence: LayerEvidence):
    names = [name.rsplit("/", 1)[-1] for name, _ in evidence.b_weights]
    if evidence.class_name != "BatchNormalization" or "moving_variance" not in names:
        return
    index = names.index("moving_variance")
    variance = evidence.b_weights[index][1]
    epsilon = evidence.b_config.get("epsilon", 1e-3)
    changes = (
        ("holds standard deviations (Keras 1 named it running_std): square it", variance ** 2, "variance ** 2"),
        ("was squared (Keras 1's running_std already held a variance): take its square root",
         np.sqrt(np.maximum(variance, 0)), "np.sqrt(variance)"),
        (f"lacks the ε = {epsilon:g} that Theano's training added to it (it stored variance + ε): add it",
         variance + epsilon, f"variance + {epsilon!r}"),
        (f"carries an extra ε = {epsilon:g} (Theano's training stored variance + ε): subtract it",
         np.maximum(variance - epsilon, 0), f"np.maximum(variance - {epsilon!r}, 0)"),
    )
    for words, changed, expression in changes:
        weights = [weight for _, weight in evidence.b_weights]
        weights[index] = changed.astype(variance.dtype)
        yield Candidate(
            cause=ID,
            b_weights=tuple(weights),
            fix=f"The moving variance of '{evidence.b_layer}' {words}.",
            code=("import numpy as np\n"
                  f'layer = model.get_layer("{evidence.b_layer}")\n'
                  "weights = layer.get_weights()\n"
                  f"variance = weights[{index}]\n"
                  f"weights[{index}] = {expression}\n"
                  "layer.set_weights(weights)"),
        )
