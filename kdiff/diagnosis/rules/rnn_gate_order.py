"""Recurrent weights whose gate blocks are in another order: Keras 2/3 LSTM [i, f, c, o] (Keras 1
stored i, c, f, o as separate arrays), GRU [z, r, h] (PyTorch [r, z, n]). Each weight holds one
block per gate along its last axis, so every gate order has the same shapes."""
from __future__ import annotations

import itertools

import numpy as np

from kdiff.diagnosis.model import Candidate, LayerEvidence

ID = "rnn-gate-order"
GATES = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h")}


def candidates(evidence: LayerEvidence):
    gates = GATES.get(evidence.class_name)
    if gates is None or not evidence.b_weights:
        return
    count = len(gates)
    for order in itertools.permutations(range(count)):
        if list(order) == sorted(order):
            continue
        stored = [""] * count  # the gate each stored block holds
        for gate, block in zip(gates, order):
            stored[block] = gate
        yield Candidate(
            cause=ID,
            b_weights=tuple(_reorder(weight, order) for _, weight in evidence.b_weights),
            fix=(f"Reorder the gate blocks of '{evidence.b_layer}': its weights hold the gates in the order "
                 f"({', '.join(stored)}), this framework expects ({', '.join(gates)})."),
            code=("import numpy as np\n"
                  f'layer = model.get_layer("{evidence.b_layer}")\n'
                  f"blocks = lambda w: np.split(w, {count}, axis=-1)\n"
                  f"layer.set_weights([np.concatenate([blocks(w)[k] for k in {order}], axis=-1)\n"
                  "                   for w in layer.get_weights()])"),
        )


def _reorder(weight: np.ndarray, order: tuple) -> np.ndarray:
    blocks = np.split(weight, len(order), axis=-1)
    return np.concatenate([blocks[k] for k in order], axis=-1)
