"""Which trainable weight of side B is which of side A's, element by element.

Weights are paired through the layer pairing and their position within the layer. Their
elements are paired by the axis order and axis reversals that turn A's weight into B's at the
start (e.g. a Keras 1 'th' kernel read by Keras 3, or a Theano kernel flipped by the
conv-kernel-flip repair); gradients, slots and updates are then mapped the same way."""
from __future__ import annotations

from dataclasses import dataclass

from kdiff.element_maps import ElementMap, find_element_map


@dataclass(frozen=True)
class WeightPair:
    layer: str              # side A's layer holding the weight
    index: int              # its position among the layer's weights (the same on both sides)
    a_index: int            # position among side A's trainable weights
    b_index: int
    name: str               # side A's name of the weight
    b_name: str
    element_map: ElementMap


def pair_weights(session, a_trainable: list[dict], b_trainable: list[dict],
                 what: str = "trainable weight") -> tuple[list[WeightPair], list[str]]:
    """The weight pairs, and a note for each of side A's weights left unpaired (``what`` they are:
    trainable weights, or moving statistics)."""
    b_position = {(w["layer"], w["index"]): i for i, w in enumerate(b_trainable)}
    a_values: dict[str, list] = {}
    b_values: dict[str, list] = {}
    pairs, notes = [], []
    for a_index, weight in enumerate(a_trainable):
        layer_pair = session.pair_of(weight["layer"])
        b_layer = layer_pair.b["name"] if layer_pair is not None and layer_pair.b is not None else None
        b_index = b_position.get((b_layer, weight["index"]))
        if b_index is None:
            notes.append(f"{weight['name']}: no {what} at the same place on side B")
            continue
        if weight["layer"] not in a_values:
            a_values[weight["layer"]] = [value for _, value in session.clients["a"].weights(weight["layer"])]
            b_values[b_layer] = [value for _, value in session.clients["b"].weights(b_layer)]
        element_map = find_element_map(a_values[weight["layer"]][weight["index"]], b_values[b_layer][weight["index"]])
        if element_map is None:
            notes.append(f"{weight['name']}: side B's weight is not side A's, reordered or not, so its steps "
                         "are not compared")
            continue
        pairs.append(WeightPair(weight["layer"], weight["index"], a_index, b_index, weight["name"], b_trainable[b_index]["name"], element_map))
    return pairs, notes
