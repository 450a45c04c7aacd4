"""Activations that kept their name but changed their definition.

- hard_sigmoid: Theano, Keras 1/2 and tf_keras compute clip(0.2x + 0.5, 0, 1); Keras 3 computes
  relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1). So Keras 3's hard_sigmoid(1.2x) is the old one: where a
  layer applies it to its own affine output (Dense, Conv, the gates of LSTM and GRU), scaling the
  weights feeding it by 1.2 (or 1/1.2 the other way) gives the other definition with the built-in
  activation, in a model that plain Keras loads.
- LeakyReLU's slope: 0.3 by default in Keras 1/2 and the Keras 3 layer, 0.2 in Keras 3's
  functional leaky_relu, 0.01 in PyTorch.
- Another activation by name, most often one of GELU's two forms: Keras's 'gelu' is exact
  (x·Φ(x), with erf); PyTorch's GELU(approximate='tanh'), JAX's default and Keras's ops.gelu
  default use 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), about 1e-3 off. No Keras config can ask
  a string activation for the tanh form, so a port that needed it names its own function
  (e.g. 'gelu_tanh', from --custom-objects). Proven by side B's layer with side A's activation.
"""
from __future__ import annotations

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "activation-definition"
KERAS3_TO_OLD = 1.2   # hard_sigmoid_keras2(x) == hard_sigmoid_keras3(1.2 * x)
# class -> (gate names, the gates computed with recurrent_activation), blocks along the weights' last axis
GATED = {"LSTM": ("ifco", "ifo"), "GRU": ("zrh", "zr"), "ConvLSTM2D": ("ifco", "ifo")}  # (Keras ConvLSTM2D: an LSTM's gates)
AFFINE = {"Dense", "Conv1D", "Conv2D", "Conv3D"}  # kernel (..., out), bias (out,)
COMMON_SLOPES = (0.3, 0.2, 0.01)


GELU_NAMES = {"gelu", "gelu_new", "gelu_tanh", "gelu_fast", "approximate_gelu", "gelu_approximate", "quick_gelu"}


def candidates(evidence: LayerEvidence):
    yield from _hard_sigmoid(evidence)
    yield from _leaky_relu_slope(evidence)
    yield from _activation_named_otherwise(evidence)


def activation_name(config: dict) -> str | None:
    """The name of the activation a layer config states: a string (Keras 1/2, tf_keras) or the
    name inside Keras 3's serialized function."""
    activation = config.get("activation")
    if isinstance(activation, dict):
        activation = activation.get("config")
    return activation if isinstance(activation, str) else None


def _activation_named_otherwise(evidence: LayerEvidence):
    a_name, b_name = activation_name(evidence.a_config), activation_name(evidence.b_config)
    if a_name is None or b_name is None or a_name == b_name:
        return
    both_gelu = a_name in GELU_NAMES and b_name in GELU_NAMES
    why = ("GELU has two forms: Keras's 'gelu' is exact (erf); the tanh approximation (PyTorch's "
           "approximate='tanh', JAX's default) differs by about 1e-3" if both_gelu else
           "the two sides apply different functions")
    yield Candidate(
        cause=ID,
        overrides={"activation": a_name},
        fix=(f"Give '{evidence.b_layer}' the activation '{a_name}' (it has '{b_name}'): {why}, and the weights were "
             f"made for '{a_name}'."),
        code=(f'old = model.get_layer("{evidence.b_layer}")\n'
              f'new = type(old).from_config({{**old.get_config(), "activation": "{a_name}"}})\n'
              "# call `new` where the model called `old` (rebuild the model around it), then:\n"
              "new.set_weights(old.get_weights())"),
    )


def _hard_sigmoid(evidence: LayerEvidence):
    config, layer = evidence.b_config, evidence.b_layer
    if evidence.class_name in GATED and config.get("recurrent_activation") == "hard_sigmoid":
        gates, scaled = GATED[evidence.class_name]
        where = f"the {', '.join(scaled)} gate columns of every weight"
    elif evidence.class_name in AFFINE and config.get("activation") == "hard_sigmoid":
        gates, scaled = "a", "a"
        where = "its kernel and bias"
    else:
        return
    scale = [KERAS3_TO_OLD if gate in scaled else 1.0 for gate in gates]
    for factor, source, target in ((KERAS3_TO_OLD, "Theano and Keras 1/2 (clip(0.2x + 0.5, 0, 1))",
                                    "Keras 3's relu6(x + 3) / 6"),
                                   (1 / KERAS3_TO_OLD, "Keras 3 (relu6(x + 3) / 6)", "clip(0.2x + 0.5, 0, 1)")):
        factors = np.array([f if f == 1.0 else factor for f in scale])
        yield Candidate(
            cause=ID,
            b_weights=tuple(_scale_blocks(weight, factors) for _, weight in evidence.b_weights),
            fix=(f"'{layer}' uses hard_sigmoid, which this side computes as {target} while the weights were made "
                 f"for {source}: multiply {where} by {factor:.6g}, which turns one definition into the other "
                 "with the built-in activation."),
            code=("import numpy as np\n"
                  f'layer = model.get_layer("{layer}")\n'
                  f"scale = np.array({[round(float(f), 6) for f in factors]})  # per gate block: {', '.join(gates)}\n"
                  f"layer.set_weights([w * np.repeat(scale, w.shape[-1] // {len(gates)}) for w in layer.get_weights()])"),
        )


def _scale_blocks(weight: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """The weight with each block of its last axis multiplied by its factor."""
    return (weight * np.repeat(factors, weight.shape[-1] // len(factors))).astype(weight.dtype)


def _leaky_relu_slope(evidence: LayerEvidence):
    if evidence.class_name != "LeakyReLU":
        return
    key = "negative_slope" if "negative_slope" in evidence.b_config else "alpha"
    slope = evidence.b_config.get(key)
    a_slope = evidence.a_config.get("negative_slope", evidence.a_config.get("alpha"))
    for other in [a_slope] if a_slope is not None else COMMON_SLOPES:
        if other == slope:
            continue
        yield Candidate(
            cause=ID,
            overrides={key: other},
            fix=(f"Set the slope of LeakyReLU '{evidence.b_layer}' to {other} (it is {slope}): the frameworks' "
                 "defaults differ (0.3 in Keras's layer, 0.2 in Keras 3's leaky_relu, 0.01 in PyTorch)."),
            code=f'model.get_layer("{evidence.b_layer}").{key} = {other}  # read at every call, and saved',
        )
