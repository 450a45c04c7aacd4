"""Pairing side A's layers with side B's: by name first, then by order and output shape; then a
layer one side has and the other has not, on a chain between two paired ones, joins a group with
its paired neighbour (kdiff.alignment.group_unpaired): the two sides are compared at the group's
ends, its cut points."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LayerPair:
    a: dict | None       # a layer description from side A's 'load' reply, or None
    b: dict | None
    aligned_by: str      # "name", "order", or "" for a layer found on one side only
    a_members: tuple = ()  # a group: side A's layers in it, in order (the pair's own among them); () for none
    b_members: tuple = ()

    def members(self, side: str) -> tuple:
        own = self.a if side == "a" else self.b
        grouped = self.a_members if side == "a" else self.b_members
        return grouped or ((own,) if own is not None else ())

    def cut(self, side: str) -> str:
        """The layer whose output stands for the pair on this side: the group's last."""
        return self.members(side)[-1]["name"]

    def inbound(self, side: str) -> tuple:
        """What feeds the pair on this side: the inbound of the group's first layer."""
        return tuple(self.members(side)[0].get("inbound", ()))

    def chain(self, side: str) -> tuple[str, ...]:
        return tuple(layer["name"] for layer in self.members(side))

    @property
    def grouped(self) -> bool:
        return bool(self.a_members or self.b_members)


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
        # (a Keras 2 name with '/', which the Keras 3 side builds with '_': backends/modern_keras/legacy_config.py)
        match = b_by_name.get(layer["name"]) or b_by_name.get(layer["name"].replace("/", "_"))
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
    return group_unpaired(result)


GROUPED_BEFORE = {"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"}  # a padding moved out of the layer after it


def group_unpaired(pairs: list[LayerPair]) -> list[LayerPair]:
    """The pairs with each layer found on one side only, on a chain (one input, one consumer), put in
    a group with a paired neighbour: after the layer feeding it when it keeps that layer's output
    shape (an Activation split out of a Dense, a Dropout or a BatchNormalization the other side has
    folded in: the pair's own output is then compared at the group's last layer), else before the
    layer it feeds (a ZeroPadding2D before a 'valid' conv that the other side pads 'same' itself).
    Where neither holds it stays 'only-a'/'only-b'."""
    pairs = list(pairs)
    for side in ("b", "a"):
        changed = True
        while changed:
            changed = False
            for index, pair in enumerate(pairs):
                layer = pair.b if side == "b" else pair.a
                if layer is None or (pair.a is not None and pair.b is not None):
                    continue
                target = _group_target(pairs, side, index)
                if target is None:
                    continue
                where, partner_index = target
                partner = pairs[partner_index]
                members = partner.members(side)
                members = (*members, layer) if where == "after" else (layer, *members)
                pairs[partner_index] = replace(partner, **{f"{side}_members": members})
                del pairs[index]
                changed = True
                break
    return pairs


def _group_target(pairs: list[LayerPair], side: str, own: int) -> tuple[str, int] | None:
    """("after", i) or ("before", i): the paired pair at index i that the one-sided layer of
    ``pairs[own]`` joins."""
    layer = pairs[own].members(side)[0]
    inbound = list(layer.get("inbound", ()))
    if len(inbound) != 1:
        return None
    consumers = [i for i, pair in enumerate(pairs) if i != own and any(
        layer["name"] in member.get("inbound", ()) for member in pair.members(side))]
    both = {i for i, pair in enumerate(pairs) if pair.a is not None and pair.b is not None}
    feeding = next((i for i in both if pairs[i].cut(side) == inbound[0]), None)
    if feeding is not None and _shape(layer) == _shape(pairs[feeding].members(side)[-1]) and \
            layer["class_name"] not in GROUPED_BEFORE:
        others = [i for i, pair in enumerate(pairs) if i not in (feeding, own) and
                  any(inbound[0] in member.get("inbound", ()) for member in pair.members(side))]
        if not others:  # the feeding layer's output goes on through this one alone
            return "after", feeding
    if len(consumers) == 1 and consumers[0] in both:
        consumer = pairs[consumers[0]]
        if list(consumer.inbound(side)) == [layer["name"]]:
            return "before", consumers[0]
    return None


def _shape(layer: dict) -> tuple:
    shapes = layer.get("output_shapes") or []
    return tuple(shapes[0]) if shapes else ()
