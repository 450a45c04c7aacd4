"""Comparing two models held in different memory layouts (channels_first vs channels_last).

Side A is the reference: every comparison is made in A's layout. Per layer, what is known
decides whether side B's arrays are moved: the layout each side was built in, and both sides'
output shapes. A pair whose shapes differ only by where the channels axis sits is transposed;
so is a pair of equal shapes where that move leaves the shape as it is (a cube, e.g. 6x6x6),
when the layouts differ and the layer is a layout-bearing one (rank 3 or more). A Flatten's
output is reordered when the two Flattens order their elements differently: side A's Flatten
flattens a channels_first tensor as laid out (Keras 1, Keras <= 2.1), side B's flattens a
channels_last one. Nothing is decided per element, and nothing here imports a framework.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.model_files import ModelFile

LAYOUTS = ("channels_first", "channels_last")


@dataclass(frozen=True)
class LayoutMap:
    """How one of side B's arrays is brought to side A's layout, and back."""

    kind: str                 # "channels": the channels axis moves; "flattened": a Flatten of a moved tensor
    a_layout: str             # side A's layout
    unflattened: tuple = ()   # for "flattened": side A's tensor before the Flatten, without the batch axis

    def to_a(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "flattened":
            moved = x.reshape(x.shape[0], *_moved(self.unflattened, self.a_layout))
            return np.ascontiguousarray(_back(moved, self.a_layout)).reshape(x.shape[0], -1)
        return np.ascontiguousarray(_back(x, self.a_layout))

    def to_b(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "flattened":
            return np.ascontiguousarray(_forth(x.reshape(x.shape[0], *self.unflattened), self.a_layout)
                                        ).reshape(x.shape[0], -1)
        return np.ascontiguousarray(_forth(x, self.a_layout))

    def shape_to_a(self, shape: tuple) -> tuple:
        if self.kind == "flattened":
            return tuple(shape)
        return (shape[0], shape[-1], *shape[1:-1]) if self.a_layout == "channels_first" else \
            (shape[0], *shape[2:], shape[1])

    @property
    def note(self) -> str:
        if self.kind == "flattened":
            order = "(C, H, W)" if self.a_layout == "channels_first" else "(H, W, C)"
            return f"layout: side B's flattened values were reordered to side A's {order} order to compare"
        axes = "(N, ..., C) -> (N, C, ...)" if self.a_layout == "channels_first" else "(N, C, ...) -> (N, ..., C)"
        return f"layout: side B's values were transposed {axes} to compare"


@dataclass(frozen=True)
class RowOrder:
    """Side A's Dense kernel with its rows in side B's Flatten order: how side B holds the kernel
    once its rows were permuted (flatten-order), so that A's gradient of it is reordered alike."""

    flatten: LayoutMap
    is_identity: bool = False

    def __call__(self, a_array: np.ndarray) -> np.ndarray:
        return self.flatten.to_b(a_array.T).T

    def part_of_b(self, b_array: np.ndarray) -> np.ndarray:  # the ElementMap interface: all of B's array
        return b_array


def _forth(x: np.ndarray, a_layout: str) -> np.ndarray:
    """A's layout -> B's (the other one)."""
    return np.moveaxis(x, 1, -1) if a_layout == "channels_first" else np.moveaxis(x, -1, 1)


def _back(x: np.ndarray, a_layout: str) -> np.ndarray:
    return np.moveaxis(x, -1, 1) if a_layout == "channels_first" else np.moveaxis(x, 1, -1)


def _moved(shape: tuple, a_layout: str) -> tuple:
    """A shape without batch axis, in B's layout."""
    shape = tuple(shape)
    return (*shape[1:], shape[0]) if a_layout == "channels_first" else (shape[-1], *shape[:-1])


@dataclass(frozen=True)
class LayoutBridge:
    """Side B's layer (or 'input:NAME') -> one LayoutMap or None per output; empty when the layouts agree."""

    a_layout: str = ""
    b_layout: str = ""
    built: bool = False       # side B was built in b_layout by kdiff (--b-layout), not stated by its file
    maps: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(m is not None for maps in self.maps.values() for m in maps)

    @property
    def moved_inputs(self) -> tuple:
        """Side B's inputs that are fed the sample with its channels axis moved."""
        return tuple(name for name, maps in self.maps.items() if name.startswith("input:") and maps[0] is not None)

    def map_of(self, b_layer: str, index: int = 0) -> LayoutMap | None:
        maps = self.maps.get(b_layer, ())
        return maps[index] if index < len(maps) else None

    def to_a(self, b_layer: str, arrays: list) -> list:
        return [m.to_a(x) if (m := self.map_of(b_layer, i)) is not None else x for i, x in enumerate(arrays)]

    def to_b(self, b_layer: str, arrays: list) -> list:
        return [m.to_b(x) if (m := self.map_of(b_layer, i)) is not None else x for i, x in enumerate(arrays)]

    def sample_for_b(self, sample: np.ndarray) -> np.ndarray:
        moved = self.moved_inputs
        return self.maps[moved[0]][0].to_b(sample) if moved else sample

    def shape_to_a(self, b_layer: str, shape: tuple) -> tuple:
        m = self.map_of(b_layer)
        return m.shape_to_a(shape) if m is not None else tuple(shape)

    def weight_map(self, b_inbound: list, a: np.ndarray, b: np.ndarray) -> RowOrder | None:
        """For a Dense fed by a reordered Flatten: the row order that turns A's kernel into B's, if it does."""
        flatten = self.map_of(b_inbound[0]) if len(b_inbound) == 1 else None
        if flatten is None or flatten.kind != "flattened" or a.ndim != 2 or a.shape != b.shape:
            return None
        candidate = RowOrder(flatten)
        return candidate if np.array_equal(candidate(a), b) else None

    def note(self, b_layer: str) -> str:
        m = self.map_of(b_layer)
        return m.note if m is not None else ""


def layout_bridge(pairs: list[LayerPair], a_model: ModelFile, b_model: ModelFile, b_built_layout: str | None,
                  a_inputs: list[dict], b_inputs: list[dict]) -> LayoutBridge:
    """The per-layer maps between side B's arrays and side A's, from the layouts and the shapes."""
    a_layout = a_model.data_format
    b_layout = b_built_layout or b_model.data_format
    if not a_layout or not b_layout or a_layout == b_layout:
        return LayoutBridge(a_layout, b_layout, bool(b_built_layout))
    maps: dict[str, tuple] = {}
    for a_input, b_input in zip(a_inputs, b_inputs):
        maps[f"input:{b_input['name']}"] = (_channels_map(a_input["shape"], b_input["shape"], a_layout),)
    moved_a: dict[str, LayoutMap | None] = {f"input:{a['name']}": maps[f"input:{b['name']}"][0]
                                             for a, b in zip(a_inputs, b_inputs)}
    flatten_formats = dict(a_model.flatten_formats)
    a_flattens_as_laid_out = _flattens_as_laid_out(a_model)
    for pair in pairs:
        if pair.a is None or pair.b is None:
            continue
        a_shapes, b_shapes = pair.a.get("output_shapes") or [], pair.b.get("output_shapes") or []
        layer_maps = tuple(_channels_map(a, b, a_layout) for a, b in zip(a_shapes, b_shapes))
        inbound = list(pair.a.get("inbound", ()))
        if (pair.a["class_name"] == "Flatten" and len(inbound) == 1 and moved_a.get(inbound[0]) is not None
                and a_layout == "channels_first" and a_flattens_as_laid_out(flatten_formats.get(pair.a["name"], ""))):
            source = next((p.a for p in pairs if p.a is not None and p.a["name"] == inbound[0]), None)
            if source is not None:
                layer_maps = (LayoutMap("flattened", a_layout, tuple(source["output_shapes"][0][1:])),)
        maps[pair.b["name"]] = maps[pair.cut("b")] = layer_maps
        moved_a[pair.a["name"]] = moved_a[pair.cut("a")] = layer_maps[0] if layer_maps else None
    return LayoutBridge(a_layout, b_layout, bool(b_built_layout), maps)


def _channels_map(a_shape, b_shape, a_layout: str) -> LayoutMap | None:
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if len(a_shape) < 3 or len(a_shape) != len(b_shape):
        return None
    return LayoutMap("channels", a_layout) if (a_shape[0], *_moved(a_shape[1:], a_layout)) == b_shape else None


def _flattens_as_laid_out(a_model: ModelFile):
    """Whether side A's Flatten of a channels_first tensor keeps (C, H, W) order: Keras 1 and
    Keras <= 2.1 always; Keras >= 2.2 and Keras 3 transpose to (H, W, C) first when the Flatten's
    data_format says channels_first."""
    version = tuple(int(p) for p in (a_model.keras_version or str(a_model.keras_major)).split(".")[:2]
                    if p.isdigit())
    transposing = a_model.keras_major >= 3 or version >= (2, 2)
    return lambda stated: not (transposing and stated == "channels_first")
