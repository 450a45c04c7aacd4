"""One comparison in a session, as named stages: the noise floor (does each side agree with
itself?), the forward pass (with the backward one fused in where the output shapes are known),
the isolation runs (--isolate), the gradient pass, then classification of one record per layer
pair into the report, where each layer at which a divergence seems to start is first run alone
(kdiff.isolation.settle_by_isolation): honest rounding amplified by depth is not a divergence; and
where gradients differ, each backward that computes them is run alone (kdiff.gradient_isolation)."""
from __future__ import annotations

from kdiff.classification import layer_records
from kdiff.errors import WorkerFailure
from kdiff.gradient_isolation import settle_gradients
from kdiff.gradients import PROJECTION
from kdiff.tied_maxima import explain as explain_tied_maxima
from kdiff.isolation import isolate_layers, settle_by_isolation
from kdiff.model_inputs import ModelInputs
from kdiff.passes import GradientPass, forward_pass, fused_gradients, gradient_pass
from kdiff.picture import DivergencePicture, divergence_picture
from kdiff.report import DIVERGED, MATCH, DiffReport


def compare(session, inputs: ModelInputs, sample_path: str, gradients: bool, noise_floor: bool) -> DiffReport:
    noise = session.noise_floor(inputs) if noise_floor else {}
    fused = fused_gradients(session, inputs) if gradients else None
    session.progress.stage("running the sample through both models and differentiating them" if fused is not None
                           else "running the sample through both models")
    forward = forward_pass(session, inputs, fused)
    isolated = {}
    if session.options.isolate:
        session.progress.stage("running each of side B's layers alone on side A's inputs")
        isolated = isolate_layers(session.pairs, session.clients["a"], session.clients["b"], session.tolerances,
                                  session.progress)
    backward = gradient_pass(session, inputs, forward, fused) if gradients else GradientPass({})
    notes = list(backward.notes)
    if any(pair.aligned_by == "order" for pair in session.pairs):
        notes.append("some layers have different names on the two sides and were paired by order and shape")
    records = layer_records(session.pairs, forward.metrics, forward.used, forward.shapes, backward.gradients,
                            isolated, session.bridge.note)
    # where a divergence seems to start, its layer alone says whether it computes otherwise or carries noise
    records, layers = settle_by_isolation(records, session.clients["a"], session.clients["b"], session.tolerances,
                                          session.progress)
    findings = []
    if backward.gradients:  # a gradient that differs only by how max pooling routes tied maxima
        layers, findings = explain_tied_maxima(session, inputs, forward, layers)
        # where gradients differ, the backward that computes them alone says whether it computes otherwise
        layers, settle_notes = settle_gradients(session, layers, session.progress)
        notes.extend(settle_notes)
    carried = [layer.name for layer in layers if layer.status == MATCH and layer.metrics is not None
               and not layer.metrics.matches]
    if carried:
        notes.append(f"{len(carried)} layer(s) ({_names(carried)}) differ in the whole model by more than their "
                     "tolerance only by the rounding their inputs carry, amplified with depth: each matches alone "
                     "on side A's inputs")
    loss = session.named_loss
    return DiffReport(
        backends=session.backend_infos(), layers=tuple(layers), tolerance=session.tolerances.given,
        sample=inputs.info(sample_path), notes=tuple(notes), noise_floor=noise,
        input_warnings=tuple(session.input_warnings),
        gradient_loss=(loss.to_json() if loss is not None else PROJECTION) if backward.gradients else None,
        picture=first_divergence_picture(session, layers), findings=tuple(findings),
    )


def first_divergence_picture(session, layers) -> DivergencePicture | None:
    """The first diverged layer's (first) output on both sides, as the forward pass left them in the
    workers, drawn against each other (kdiff.picture); None where there is none or it cannot be had."""
    first = next((layer for layer in layers if layer.status == DIVERGED and layer.metrics is not None), None)
    if first is None:
        return None
    b_name = first.b_name or first.name
    try:
        a_out = session.clients["a"].outputs([first.name])[first.name]
        b_out = session.clients["b"].outputs([b_name])[b_name]  # in side A's layout (kdiff.layout_client)
    except WorkerFailure:
        if not session.pool.all_alive():
            raise
        return None  # the picture is an extra: the comparison stands without it
    return divergence_picture(first.name, b_name, a_out[0], b_out[0]) if a_out and b_out else None


def _names(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", and {len(names) - shown} more" if len(names) > shown else "")
