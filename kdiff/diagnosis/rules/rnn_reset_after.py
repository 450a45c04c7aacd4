"""A GRU rebuilt with the other `reset_after`: Keras 2 defaults to False, bias (3u,), candidate
state tanh(W_h x + b_h + U_h (r * h)); Keras 3 defaults to True, bias (2, 3u) (an input row and a
recurrent row), tanh(W_h x + b_in_h + r * (U_h h + b_rec_h)). A port that copied the weights into
a GRU with the other setting gives small errors that grow along the sequence.

Going to False, the bias rows are summed: exact for the z and r gates, and for h only when the
recurrent h-bias is zero (the re-run decides). Going to True, the bias becomes the input row with
a zero recurrent row, which is exact."""
from __future__ import annotations

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "rnn-reset-after"


def candidates(evidence: LayerEvidence):
    if evidence.class_name != "GRU" or "reset_after" not in evidence.b_config:
        return
    b_setting = bool(evidence.b_config["reset_after"])
    a_setting = evidence.a_config.get("reset_after")
    if b_setting and a_setting in (None, False):   # Keras 1 configs have no reset_after: it behaved as False
        target = False
    elif not b_setting and a_setting is True:
        target = True
    else:
        return
    weights = [weight for _, weight in evidence.b_weights]
    has_bias = len(weights) == 3 and evidence.b_config.get("use_bias", True)
    if has_bias and weights[2].ndim != (2 if b_setting else 1):
        return  # not the bias of a GRU with B's setting
    yield _to_reset_after(evidence, weights, has_bias, target)


def _to_reset_after(evidence: LayerEvidence, weights: list, has_bias: bool, setting: bool) -> Candidate:
    if has_bias:  # GRU weights: kernel, recurrent_kernel, bias
        bias = weights[2]
        weights[2] = (np.stack([bias, np.zeros_like(bias)]) if setting else bias.sum(axis=0)).astype(bias.dtype)
    layer = evidence.b_layer
    conversion = ("the old bias becomes the input row, with a zero recurrent row" if setting else
                  "its bias is the sum of the input and recurrent rows")
    bias_line = ("bias = np.stack([bias, np.zeros_like(bias)])  # (3u,) -> (2, 3u): input row, recurrent row"
                 if setting else "bias = bias.sum(axis=0)  # (2, 3u) -> (3u,): input row + recurrent row")
    return Candidate(
        cause=ID,
        overrides={"reset_after": setting},
        b_weights=tuple(weights),
        fix=(f"Rebuild GRU '{layer}' with reset_after={setting} (it has {not setting}): the weights were made "
             f"for a GRU that applies the reset gate {'after' if setting else 'before'} the recurrent kernel "
             f"(Keras {'3' if setting else '2'}'s default); {conversion if has_bias else 'it has no bias'}."),
        code=("import numpy as np\n"
              f'old = model.get_layer("{layer}")\n'
              + ("kernel, recurrent_kernel, bias = old.get_weights()\n" + bias_line + "\n" if has_bias else
                 "kernel, recurrent_kernel = old.get_weights()\n")
              + f"new = type(old).from_config({{**old.get_config(), 'reset_after': {setting}}})\n"
              "# call `new` where the model calls `old` (rebuild the model around it), then:\n"
              f"new.set_weights([kernel, recurrent_kernel{', bias' if has_bias else ''}])"),
    )
