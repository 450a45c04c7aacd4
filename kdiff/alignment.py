"""Pairing side A's layers with side B's: by name first, then by order and output shape."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerPair:
    a: dict | None       # a layer description from side A's 'load' reply, or None
    b: dict | None
    aligned_by: str      # "name", "order", or "" for a layer found on one side only


def _shape_key(layer: dict) -> tuple:
    return tuple(tuple(shape) for shape in layer.get("output_shapes") or [])


def _moved_key(layer: dict, a_layout: str) -> tuple:
    """Side B's output shapes as side A's layout would have them (kdiff.layouts: the channels axis moved)."""
    return tuple((s[0], s[-1], *s[1:-1]) if len(s) >= 3 and a_layout == "channels_first" else
                 (s[0], *s[2:], s[1]) if len(s) >= 3 else s for s in _shape_key(layer))


def align_layers(a_layers: list[dict], b_layers: list[dict], a_layout: str = "") -> list[LayerPair]:
    """Pairs in side A's topological order; B's unpaired layers follow their predecessor. With
    ``a_layout`` (given when side B holds its tensors in the other layout), a B layer whose shapes
    are A's with the channels axis moved also pairs by order."""
    b_by_name = {layer["name"]: layer for layer in b_layers}
    paired_b: set[str] = set()
    pairs: list[LayerPair] = []
    for layer in a_layers:
        match = b_by_name.get(layer["name"])
        if match is not None:
            paired_b.add(match["name"])
        pairs.append(LayerPair(layer, match, "name" if match is not None else ""))

    # Unpaired layers on both sides: pair them in order where the output shapes agree.
    leftover_b = [layer for layer in b_layers if layer["name"] not in paired_b]
    for index, pair in enumerate(pairs):
        if pair.b is not None or not leftover_b:
            continue
        for candidate in leftover_b:
            if _shape_key(pair.a) in (_shape_key(candidate), _moved_key(candidate, a_layout) if a_layout else None):
                pairs[index] = LayerPair(pair.a, candidate, "order")
                leftover_b.remove(candidate)
                break
        else:
            continue
        # only pair in order: B layers before the one taken cannot pair with later A layers
        taken_at = b_layers.index(pairs[index].b)
        leftover_b = [layer for layer in leftover_b if b_layers.index(layer) > taken_at]

    paired_b = {pair.b["name"] for pair in pairs if pair.b is not None}
    result: list[LayerPair] = []
    b_position = {layer["name"]: i for i, layer in enumerate(b_layers)}
    only_b = [layer for layer in b_layers if layer["name"] not in paired_b]
    for pair in pairs:
        result.append(pair)
        if pair.b is not None:
            while only_b and b_position[only_b[0]["name"]] < b_position[pair.b["name"]]:
                result.insert(len(result) - 1, LayerPair(None, only_b.pop(0), ""))
    result.extend(LayerPair(None, layer, "") for layer in only_b)
    return result
