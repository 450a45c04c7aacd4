"""BatchNormalization divides by sqrt(variance + epsilon), and the epsilons differ: Keras 1e-3,
PyTorch 1e-5, Keras applications' ResNets 1.001e-5. A port that kept the other framework's
default is off most in channels of small variance (relative error about Δε / 2σ²)."""
from __future__ import annotations

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "batchnorm-epsilon"
COMMON_EPSILONS = (1e-3, 1e-5, 1.001e-5)


def candidates(evidence: LayerEvidence):
    if evidence.class_name != "BatchNormalization" or "epsilon" not in evidence.b_config:
        return
    epsilon = evidence.b_config["epsilon"]
    a_epsilon = evidence.a_config.get("epsilon")
    if a_epsilon == epsilon:
        return  # both configs say the same: the epsilon is not what differs
    for other in [a_epsilon] if a_epsilon is not None else COMMON_EPSILONS:
        if other == epsilon:
            continue
        yield Candidate(
            cause=ID,
            overrides={"epsilon": other},
            fix=(f"Set epsilon of '{evidence.b_layer}' to {other:g} (it is {epsilon:g}): the statistics were "
                 f"made for a normalisation by sqrt(variance + {other:g})."),
            code=f'model.get_layer("{evidence.b_layer}").epsilon = {other!r}  # read at every call, and saved',
        )
