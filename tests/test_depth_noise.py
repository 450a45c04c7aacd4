"""Honest rounding that depth amplifies is not a divergence (issue #16): where a layer is out of its
whole-model tolerance while every layer feeding it matches, kdiff runs it alone on side A's
inputs; if it matches alone it matches, and so do the layers after it that carry the same noise.
A layer whose own computation differs stays 'diverged'. Fast: numpy chains, stand-in clients."""
from __future__ import annotations

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.classification import LayerRecord, classify
from kdiff.isolation import settle_by_isolation
from kdiff.metrics import Tolerance, compare_arrays
from kdiff.report import DIVERGED, MATCH, PROPAGATED

TOLERANCE = Tolerance(1e-5, 1e-5)
DEPTH = 12


class Quiet:
    def stage(self, text): ...
    def log(self, text): ...
    def layer_done(self, done, total): ...


def chain(depth: int, noise: float, faulty: int | None = None, seed: int = 0):
    """Side A's and side B's outputs of a chain of Dense+tanh layers: B adds ``noise`` (relative) to
    each layer's result, as another summation order would, and at ``faulty`` computes otherwise."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((16, 16)) * 1.3 / 4 for _ in range(depth)]
    x = rng.standard_normal((4, 16))

    def layer(i, inputs, side):
        y = np.tanh(inputs @ weights[i] * (1.01 if side == "b" and i == faulty else 1.0))
        return y * (1 + noise * rng.standard_normal(y.shape)) if side == "b" else y

    outputs = {"a": [], "b": []}
    for side in "ab":
        h = x
        for i in range(depth):
            h = layer(i, h, side)
            outputs[side].append(h)
    return layer, x, outputs


class Client:
    """A side as isolation sees it: the last forward pass's outputs, and a layer run alone."""

    def __init__(self, side, layer, x, outputs):
        self.side, self.layer, self.x, self.recorded = side, layer, x, outputs
        self.runs: list[str] = []
        self.pool = self

    def all_alive(self):
        return True

    def outputs(self, names):
        return {name: [self.x if name == "input:x" else self.recorded[int(name.split("_")[1])]] for name in names}

    def run_layer(self, name, inputs):
        self.runs.append(name)
        return [self.layer(int(name.split("_")[1]), inputs[0], self.side)]


def records_of(outputs, depth):
    records = []
    for i in range(depth):
        layer = {"name": f"dense_{i}", "class_name": "Dense", "inbound": ["input:x" if i == 0 else f"dense_{i - 1}"]}
        metrics = compare_arrays(outputs["a"][i], outputs["b"][i], TOLERANCE)
        records.append(LayerRecord(LayerPair(layer, layer, "name"), metrics, ((4, 16),), ((4, 16),), TOLERANCE))
    return records


def settle(noise, faulty=None):
    layer, x, outputs = chain(DEPTH, noise, faulty)
    a, b = Client("a", layer, x, outputs["a"]), Client("b", layer, x, outputs["b"])
    records = records_of(outputs, DEPTH)
    before = classify(records)
    _, after = settle_by_isolation(records, a, b, TOLERANCE, Quiet())
    return before, after, b.runs


def test_rounding_amplified_by_depth_matches_once_each_layer_matches_alone():
    before, after, runs = settle(noise=2e-6)
    assert DIVERGED in {layer.status for layer in before}  # the plain whole-model verdict calls noise a divergence
    assert [layer.status for layer in after] == [MATCH] * DEPTH
    carried = [layer for layer in after if not layer.metrics.matches]
    assert carried and all("only by the rounding its inputs carry" in layer.note for layer in carried)
    assert len(runs) == len(carried)  # each noisy layer run alone once, in one or two rounds


def test_a_layer_that_computes_otherwise_stays_diverged_and_the_layers_after_it_only_propagate():
    before, after, runs = settle(noise=0.0, faulty=5)
    statuses = [layer.status for layer in after]
    assert statuses[:5] == [MATCH] * 5 and statuses[5] == DIVERGED and set(statuses[6:]) == {PROPAGATED}
    assert runs == ["dense_5"]  # the layers after a real divergence are not run alone
    assert after[5].isolated is not None and not after[5].isolated.matches


def test_noise_before_a_real_fault_settles_and_the_fault_is_still_found():
    _, after, _ = settle(noise=2e-6, faulty=9)
    statuses = [layer.status for layer in after]
    assert statuses[:9] == [MATCH] * 9 and statuses[9] == DIVERGED


def test_a_layer_whose_inputs_do_not_match_is_not_called_matching_by_its_isolated_run():
    layer, x, outputs = chain(3, 0.0, faulty=0)
    records = records_of(outputs, 3)
    same = compare_arrays(outputs["a"][1], outputs["a"][1], TOLERANCE)
    records[1] = LayerRecord(records[1].pair, records[1].outcome, records[1].a_shapes, records[1].b_shapes,
                             TOLERANCE, isolated=same)
    assert [layer.status for layer in classify(records)] == [DIVERGED, PROPAGATED, PROPAGATED]


def test_a_nan_on_one_side_only_stays_diverged_though_the_layer_matches_alone():
    # TensorFlow fuses MatMul+BiasAdd+Relu in a whole model and its fused Relu turns NaN into 0; run
    # alone, the layer passes the NaN as Theano does. That NaN is no rounding its inputs carry.
    a = np.array([[np.nan, 1.0, 2.0]])
    alone = compare_arrays(a, a.copy(), TOLERANCE)
    layer = {"name": "dense_1", "class_name": "Dense", "inbound": ["input:x"]}

    def status(b):
        record = LayerRecord(LayerPair(layer, layer, "name"), compare_arrays(a, b, TOLERANCE), ((1, 3),), ((1, 3),),
                             TOLERANCE, isolated=alone)
        return classify([record])[0].status

    assert status(np.array([[0.0, 1.0, 2.0]])) == DIVERGED
    assert status(np.array([[np.nan, 1.0, 2.0 + 1e-3]])) == MATCH  # the same NaN, and a difference it carries
