"""Gradients that differ only by what the forward pass carries (kdiff.gradient_isolation), on a
numpy model of two Dense layers and a softmax, with stand-in sides: the layer's backward run alone
on side A's values matches (carried: no gradient divergence), or side B's backward computes
otherwise (the divergence stays, named where it starts). Real workers: test_gradients_carried.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from kdiff.alignment import LayerPair
from kdiff.gradient_isolation import BackwardAlone, settle_gradients
from kdiff.gradients import GradientDiff, compare_gradient
from kdiff.metrics import Tolerance
from kdiff.progress import Progress
from kdiff.report import MATCH, BackendInfo, DiffReport, LayerResult
from kdiff.tolerances import Tolerances, derive

RNG = np.random.default_rng(7)
X = RNG.standard_normal((2, 16)).astype(np.float32)
W1 = RNG.standard_normal((16, 32)).astype(np.float32)
W2 = (RNG.standard_normal((32, 10)) * 3).astype(np.float32)
P = (RNG.standard_normal((2, 10)) / np.sqrt(20)).astype(np.float32)
DESCRIPTIONS = [
    {"name": "dense_1", "class_name": "Dense", "inbound": ["input:x"], "output_shapes": [[None, 32]],
     "weight_shapes": [[16, 32]], "dtype": "float32"},
    {"name": "dense_2", "class_name": "Dense", "inbound": ["dense_1"], "output_shapes": [[None, 10]],
     "weight_shapes": [[32, 10]], "dtype": "float32"},
    {"name": "softmax", "class_name": "Softmax", "inbound": ["dense_2"], "output_shapes": [[None, 10]],
     "weight_shapes": [], "dtype": "float32"},
]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class NumpySide:
    """One side of the model: its forward values, and every layer's backward, alone or in the model.
    ``bias`` is added to dense_1's output (honest rounding, made larger); ``wrong_softmax_backward``
    makes the softmax's backward forget its subtraction (a port's hand-written gradient with a bug)."""

    bias: float = 0.0
    wrong_softmax_backward: bool = False
    values: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)

    def run(self):
        h = (X @ W1 + np.float32(self.bias)).astype(np.float32)
        z = (h @ W2).astype(np.float32)
        self.values = {"input:x": [X], "dense_1": [h], "dense_2": [z], "softmax": [softmax(z)]}
        gz = self.layer_backward("softmax", [z], [P])[0][0]
        gh, dw2 = self.layer_backward("dense_2", [h], [gz])
        _, dw1 = self.layer_backward("dense_1", [X], gh)
        self.grads = {"softmax": ([P], []), "dense_2": ([gz], dw2), "dense_1": (gh, dw1)}
        return self

    def outputs(self, names):
        return {name: self.values[name] for name in names}

    def layer_config(self, name):
        return {}  # (the Softmax layer's axis: Keras's default, the last)

    def output_gradients(self, names):
        return {name: self.grads[name][0] for name in names}

    def layer_backward(self, name, inputs, grads):
        (x,), (g,) = inputs, grads
        if name == "softmax":
            y = softmax(x)
            if self.wrong_softmax_backward:
                return [(y * g).astype(np.float32)], []
            return [(y * (g - (y * g).sum(axis=1, keepdims=True))).astype(np.float32)], []
        kernel = W1 if name == "dense_1" else W2
        return [(g @ kernel.T).astype(np.float32)], [(f"{name}/kernel", (x.T @ g).astype(np.float32))]


@dataclass
class StubPool:
    def all_alive(self):
        return True


@dataclass
class StubSession:
    a: NumpySide
    b: NumpySide

    def __post_init__(self):
        self.pairs = [LayerPair(d, d, "name") for d in DESCRIPTIONS]
        self.tolerances = derive(self.pairs, [{"name": "x", "shape": [None, 16]}])
        self.clients = {"a": self.a, "b": self.b}
        self.weight_maps = {}
        self.pool = StubPool()

    def pair_of(self, name):
        return next(pair for pair in self.pairs if pair.a["name"] == name)


def whole_model_layers(session: StubSession) -> list[LayerResult]:
    """The comparison's layer results as the backward diff leaves them (forward judged matching)."""
    layers = []
    for description in DESCRIPTIONS:
        name = description["name"]
        tolerance = session.tolerances.gradient(name)
        (ga,), wa = session.a.grads[name]
        (gb,), wb = session.b.grads[name]
        weights = tuple((w, compare_gradient(x, y, session.tolerances.gradient(name, 2)))
                        for (w, x), (_, y) in zip(wa, wb))
        layers.append(LayerResult(name, description["class_name"], (2, 10), (2, 10), MATCH,
                                  inbound=tuple(description["inbound"]),
                                  grad=GradientDiff(compare_gradient(ga, gb, tolerance), weights)))
    return layers


def report_of(layers) -> DiffReport:
    info = BackendInfo("a", "numpy", {}, "cpu", "")
    return DiffReport((info, info), tuple(layers), None, {})


def test_gradients_that_differ_only_by_the_forward_difference_are_carried_not_divergences():
    session = StubSession(NumpySide().run(), NumpySide(bias=3e-3).run())
    layers = whole_model_layers(session)
    assert report_of(layers).first_grad_divergence is not None  # judged in the whole model, they differ
    settled, notes = settle_gradients(session, layers, Progress())
    assert notes == []
    assert report_of(settled).first_grad_divergence is None
    differing = [layer for layer in settled if not layer.grad.matches]
    assert differing and all(layer.grad.carried for layer in differing)
    assert all(isinstance(layer.grad.alone, BackwardAlone) and layer.grad.alone.matches
               for layer in differing if layer.grad.weights)


def test_a_backward_that_computes_otherwise_stays_the_first_gradient_divergence():
    session = StubSession(NumpySide().run(), NumpySide(wrong_softmax_backward=True).run())
    settled, _ = settle_gradients(session, whole_model_layers(session), Progress())
    first = report_of(settled).first_grad_divergence
    assert first is not None and first[1].name == "dense_2"  # its output gradient, computed by softmax's backward
    by_name = {layer.name: layer for layer in settled}
    assert not by_name["dense_2"].grad.carried
    assert by_name["softmax"].grad.matches  # (d loss / d the model's output is the projection on both sides)


def test_a_layer_that_cannot_be_run_backward_alone_is_judged_in_the_whole_model():
    class Refusing(NumpySide):
        def layer_backward(self, name, inputs, grads):
            if not self.grads:
                return super().layer_backward(name, inputs, grads)
            from kdiff.errors import WorkerFailure
            raise WorkerFailure("b", "numpy", "layer_backward", "cannot", "")

    session = StubSession(NumpySide().run(), Refusing(bias=3e-3).run())
    settled, _ = settle_gradients(session, whole_model_layers(session), Progress())
    assert report_of(settled).first_grad_divergence is not None
    assert any(isinstance(layer.grad.alone, str) and "could not be run alone" in layer.grad.alone for layer in settled)


def test_the_backward_alone_tolerance_grows_with_the_fan_and_the_sum_over_the_batch():
    tolerances = derive([LayerPair(d, d, "name") for d in DESCRIPTIONS], [{"name": "x", "shape": [None, 16]}])
    own = tolerances.backward_alone("dense_1").rtol
    assert tolerances.backward_alone("dense_1", fan=4.0).rtol == pytest.approx(2 * own)
    assert tolerances.backward_alone("dense_1", 1.0, summed_terms=100).rtol > own
    given = Tolerances.from_user(Tolerance(atol=1e-3, rtol=1e-3))
    assert given.backward_alone("dense_1", fan=9.0).rtol == 1e-3


class _Amplifying:
    """A layer whose backward moves 1000 times as much as its inputs do (as a saturated softmax's, with the
    logits' rounding): side A's own spread under a change its forward tolerance allows is measured."""

    def layer_backward(self, name, inputs, grads):
        (x,) = inputs
        return [(1000 * x).astype(np.float32)], [("w", (1000 * x.sum(axis=0)).astype(np.float32))]


def test_side_a_own_spread_is_the_allowance_of_a_backward_that_amplifies_its_forward_rounding():
    from kdiff.gradient_isolation import _judged, own_spread

    x = RNG.standard_normal((4, 8)).astype(np.float32)
    rtol = 1e-6
    first = _Amplifying().layer_backward("l", [x], [])
    (input_spread,), (weight_spread,) = own_spread(_Amplifying(), "l", [x], [], rtol, first)
    assert 0 < input_spread <= 1000 * rtol * np.abs(x).max() * 1.01
    tight = Tolerance(atol=0.0, rtol=1e-7)
    honest = first[0][0] + np.float32(0.5 * input_spread)  # B's forward rounded otherwise, amplified as A's is
    assert not compare_gradient(first[0][0], honest, tight).matches
    assert _judged(first[0][0], honest, tight, input_spread).matches
    assert not _judged(first[0][0], first[0][0] * 1.01, tight, input_spread).matches  # a 1 % fault stays one
    assert weight_spread > 0
