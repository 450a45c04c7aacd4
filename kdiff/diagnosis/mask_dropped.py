"""A mask one side drops: side A's recurrent layer is fed a mask (an Embedding with mask_zero, or a
Masking layer) and side B's is not, or the reverse, so B's layer reads the padding that A's skips.
Named where the two sides' Embedding feeding the layer disagree on mask_zero, or where the layer's
group (kdiff.alignment) holds a Masking layer on one side only (a port that dropped it, or added
one), and proven on the whole model: side B's Embedding rebuilt with side A's mask_zero (the mask
then reaches every layer after it, as in A), or side B's layer called with the mask side A's Masking
gives (with no mask, where only side B's group masks), and the model compared again, the layer
matches. A layer alone gets no mask, so no rule that runs it alone can show this."""
from __future__ import annotations

from kdiff.diagnosis.model import ErrorSize, Finding
from kdiff.report import MATCH

CAUSE = "mask-dropped"
MASK_SOURCES = {"Embedding"}
# understood by the Keras 3 and tf-keras workers (backends/modern_keras/layer_changes.py): side B's layer masks its
# input as Masking(value) would, or ignores the mask it is given; both set to nothing: the layer as it was
MASKED_BY, UNMASKED = "kdiff:masked_by", "kdiff:unmasked"


def prove_mask_dropped(session, layer, sample) -> tuple[Finding, object] | None:
    """(the finding, the comparison with the fix kept on side B) where ``layer`` (the first divergence)
    is fed a mask on one side only and the Embedding feeding it disagrees on mask_zero; else None."""
    pair = session.pair_of(layer.name)
    if pair is None or pair.b is None or bool(pair.a.get("masked")) == bool(pair.b.get("masked")):
        return None
    if any(member["class_name"] == "Masking" for side in "ab" for member in pair.members(side)):
        return _prove_masking(session, layer, pair, sample)
    source = _mask_source(session.a_layers, pair.a)
    source_pair = session.pair_of(source) if source else None
    if source_pair is None or source_pair.b is None:
        return None
    a, b = session.clients["a"], session.clients["b"]
    a_mask, b_mask = (bool(a.layer_config(source).get("mask_zero")),
                      bool(b.layer_config(source_pair.b["name"]).get("mask_zero")))
    if a_mask == b_mask:
        return None
    b_source = source_pair.b["name"]
    proven = _proven_on_model(session, layer, sample, b_source, {"mask_zero": a_mask}, {"mask_zero": b_mask})
    if proven is None:
        return None
    return _finding(
        layer, proven[0], b_source,
        fix=(f"'{layer.name}' is fed a mask on side {'A' if a_mask else 'B'} only: '{b_source}' has mask_zero="
             f"{b_mask} on side B and {a_mask} on side A, so side {'B' if a_mask else 'A'}'s layers read the "
             f"padding the other skips. Build '{b_source}' with mask_zero={a_mask}."),
        code=("config = model.get_config()\n"
              f'next(l for l in config["layers"] if l["name"] == "{b_source}")["config"]["mask_zero"] = {a_mask}\n'
              "fixed = model.__class__.from_config(config)\n"
              "fixed.set_weights(model.get_weights())")), proven[1]


def _proven_on_model(session, layer, sample, b_layer: str, change: dict, undo: dict):
    """(the layer's comparison, the model's) with ``change`` made to side B's ``b_layer`` and kept, where the
    whole model compared again then matches at ``layer``; else None, side B put back with ``undo``."""
    b = session.clients["b"]
    b.change_layer(b_layer, change, None)
    repaired = session.compare(sample, gradients=False, noise_floor=False)
    after = next((result for result in repaired.layers if result.name == layer.name), None)
    if after is None or after.status != MATCH or after.metrics is None:
        b.change_layer(b_layer, undo, None)  # not the cause: side B as it was
        return None
    return after, repaired


def _finding(layer, after, source: str, fix: str, code: str) -> Finding:
    before = layer.metrics
    return Finding(
        cause=CAUSE, layer=layer.name, verified=True,
        before=ErrorSize(before.max_abs, before.max_rel) if before is not None else ErrorSize(float("inf"), None),
        after=ErrorSize(after.metrics.max_abs, after.metrics.max_rel), fix=fix, code=code,
        detail={"mask_source": source})


def _prove_masking(session, layer, pair, sample) -> tuple[Finding, object] | None:
    """The group's Masking layer on one side only: side B's layer called as side A's is (masked, or not)."""
    a_masking, b_masking = (next((m["name"] for m in pair.members(side) if m["class_name"] == "Masking"), None)
                            for side in "ab")
    if (a_masking is None) == (b_masking is None) or session.sides[1].backend.startswith("theano"):
        return None
    b_layer = pair.b["name"]
    value = float(session.clients["a"].layer_config(a_masking).get("mask_value", 0.0)) if a_masking else None
    proven = _proven_on_model(session, layer, sample, b_layer, {MASKED_BY: value} if a_masking else {UNMASKED: True},
                              {MASKED_BY: None, UNMASKED: False})
    if proven is None:
        return None
    if a_masking:
        fix = (f"side A masks the input of '{layer.name}' with its Masking layer '{a_masking}' (mask_value={value:g}: "
               f"a timestep whose features all equal it is skipped); side B has no Masking there, so its "
               f"'{b_layer}' reads the padding. Add keras.layers.Masking(mask_value={value:g}) before '{b_layer}' in "
               "side B's model.")
        code = (f"x = keras.layers.Masking(mask_value={value!r})(x)  # x: what feeds '{b_layer}'\n"
                f"x = model.get_layer('{b_layer}')(x)  # now given the mask")
    else:
        fix = (f"side B masks the input of '{b_layer}' with its Masking layer '{b_masking}'; side A has none there, "
               f"and its '{layer.name}' reads every timestep. Take '{b_masking}' out of side B's model (or add it "
               "to side A's, if skipping the padding is what you meant).")
        code = f"# side B's model: feed '{b_layer}' what feeds '{b_masking}', and leave '{b_masking}' out"
    return _finding(layer, proven[0], a_masking or b_masking, fix, code), proven[1]


def _mask_source(a_layers: dict, layer: dict) -> str | None:
    """The Embedding upstream of the layer on side A, following first inbound layers."""
    seen = set()
    current = layer
    while current is not None and current["name"] not in seen:
        seen.add(current["name"])
        inbound = [source for source in current.get("inbound", ()) if source in a_layers]
        if not inbound:
            return None
        current = a_layers[inbound[0]]
        if current["class_name"] in MASK_SOURCES:
            return current["name"]
    return None
