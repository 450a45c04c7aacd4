"""A divergence that starts where NaN or Inf reach a layer: the frameworks treat non-finite values
differently (Theano's ReLU passes NaN, TensorFlow's gives 0; max pooling and clipping differ too),
not their arithmetic. Proof: both sides' layer, run alone on side A's inputs with every non-finite
value set to 0, agree."""
from __future__ import annotations

import numpy as np

from kdiff.isolation import run_chain
from kdiff.diagnosis import evidence as evidence_mod
from kdiff.diagnosis.model import ErrorSize, Finding, LayerEvidence
from kdiff.metrics import Tolerance
from kdiff.tolerances import Tolerances, as_tolerances, judge_layer
from kdiff.worker_calls import SideClient

CAUSE = "non-finite-input"


def holds_non_finite(arrays) -> bool:
    return any(np.asarray(x).dtype.kind in "fc" and not np.all(np.isfinite(x)) for x in arrays)


def prove_non_finite(a: SideClient, b: SideClient, evidence: LayerEvidence,
                     tolerance: Tolerance | Tolerances) -> Finding | None:
    """The finding when the layer's inputs hold NaN or Inf (None otherwise); verified when, with those
    values set to 0, side B's layer alone matches side A's."""
    if not holds_non_finite(evidence.a_inputs):
        return None
    count = sum(int(np.size(x) - np.isfinite(x).sum()) for x in evidence.a_inputs)
    before = evidence_mod.isolated_error(b, evidence, tolerance)
    cleaned = [np.nan_to_num(np.asarray(x), nan=0.0, posinf=0.0, neginf=0.0) for x in evidence.a_inputs]
    a_out = run_chain(a, evidence.chain("a"), cleaned)
    b_out = run_chain(b, evidence.chain("b"), cleaned)
    after, _ = judge_layer(as_tolerances(tolerance).isolated(evidence.layer), a_out, b_out) \
        if [o.shape for o in a_out] == [o.shape for o in b_out] else (None, None)
    verified = after is not None and after.matches
    return Finding(
        cause=CAUSE, layer=evidence.layer, verified=verified,
        before=ErrorSize(before.max_abs, before.max_rel),
        after=ErrorSize(after.max_abs, after.max_rel) if after is not None else None,
        fix=(f"The inputs of '{evidence.layer}' hold {count} NaN or Inf value(s), and the two frameworks treat "
             "non-finite values differently" + (" (with them set to 0 the layer agrees)" if verified else "")
             + ": clean the sample, or find where they come from, before comparing."),
        code="import numpy as np\nsample = np.nan_to_num(np.load('sample.npy'), nan=0.0, posinf=0.0, neginf=0.0)\n"
             "np.save('sample_clean.npy', sample)",
        detail={"non_finite_values": count})
