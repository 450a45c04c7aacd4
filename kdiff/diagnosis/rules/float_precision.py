"""A layer computed at another precision than the other side's: a Keras 3 (or tf_keras) layer whose
dtype policy is mixed_bfloat16, mixed_float16, bfloat16 or float16 (a port made under
``keras.mixed_precision.set_global_policy(...)``), or float64 (a Theano floatX=float64 model),
against float32. It shows as diffuse, structureless error: about 1e-3 relative for 16-bit floats,
1e-7 for float32 against float64. The fix is the other side's policy (float32 when its config names
none). The mixed policies keep float32 weights; the plain 16-bit ones store the weights at 16 bits
too, and then the other side's weights are needed as well, when B's are exactly A's rounded."""
from __future__ import annotations

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "float-precision"
FLOAT_POLICIES = ("float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16")
DEFAULT_POLICY = "float32"
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}  # of the dtype a 16-bit policy stores weights in
SMALLEST_NORMAL = {"float16": 2.0 ** -14, "bfloat16": 2.0 ** -126}


def policy_name(config: dict) -> str | None:
    """The float dtype policy a layer config names: Keras 3 writes a DTypePolicy dict, tf_keras a
    Policy dict or a string, Keras 2 a string; None for other dtypes (ints, quantized policies)."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return dtype if dtype in FLOAT_POLICIES else None


def compute_dtype(policy: str) -> str:
    """The dtype a layer under `policy` computes in."""
    return policy.removeprefix("mixed_")


def variable_dtype(policy: str) -> str:
    """The dtype a layer under `policy` keeps its weights in (the mixed policies keep float32)."""
    return DEFAULT_POLICY if policy.startswith("mixed_") else policy


def candidates(evidence: LayerEvidence):
    policy = policy_name(evidence.b_config)
    if policy is None:
        return
    target = policy_name(evidence.a_config) or DEFAULT_POLICY
    if target == policy:
        return
    layer = evidence.b_layer
    code = (f'model.get_layer("{layer}").dtype_policy = "{target}"  # Keras 3: the compute dtype, read at '
            "every call, and saved\n# or build the model without keras.mixed_precision.set_global_policy(...)")
    yield Candidate(
        cause=ID,
        overrides={"dtype": target},
        b_weights=tuple(_as_dtype(weight, variable_dtype(target)) for _, weight in evidence.b_weights),
        fix=(f"Set the dtype policy of '{layer}' to {target} (it is {policy}): side A computes it in "
             f"{compute_dtype(target)}, this side in {compute_dtype(policy)}, and their rounding is the whole "
             "difference."),
        code=code,
    )
    stored = variable_dtype(policy)
    if stored in UNIT_ROUNDOFF and _rounded_from(evidence.a_weights, evidence.b_weights, stored):
        yield Candidate(
            cause=ID,
            overrides={"dtype": target},
            b_weights=tuple(_as_dtype(weight, variable_dtype(target)) for _, weight in evidence.a_weights),
            fix=(f"Set the dtype policy of '{layer}' to {target} (it is {policy}) and load its weights from side A: "
                 f"{policy} computes in {stored} and stores the weights in {stored} too, rounded from A's."),
            code=(f'layer = model.get_layer("{layer}")  # its variables are {stored}: rebuild it with '
                  f'dtype="{target}", then\nlayer.set_weights(original.get_layer("{evidence.layer}").get_weights())'
                  f'  # the {variable_dtype(target)} weights'),
        )


def _as_dtype(weight: np.ndarray, name: str) -> np.ndarray:
    """The weight in dtype `name` where numpy has it (bfloat16 is cast by side B's framework)."""
    return weight.astype(name) if name in ("float16", "float32", "float64") else weight


def _rounded_from(a_weights: tuple, b_weights: tuple, stored: str) -> bool:
    """Whether B's weights differ from A's, but by no more than rounding A's to `stored` does."""
    if not a_weights or len(a_weights) != len(b_weights):
        return False
    differs = False
    for (_, a), (_, b) in zip(a_weights, b_weights):
        if a.shape != b.shape:
            return False
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        error = np.abs(a - b)
        if (error > UNIT_ROUNDOFF[stored] * np.abs(a) + SMALLEST_NORMAL[stored] * UNIT_ROUNDOFF[stored]).any():
            return False
        differs = differs or bool(error.any())
    return differs
