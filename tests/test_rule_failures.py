"""A rule that fails (a bug of kdiff's own) never ends the run: it becomes 'rule X could not be checked
on layer Y' with its traceback in a log, and the other rules are still tried (fast tier, stand-in side)."""
import numpy as np

from kdiff.diagnosis import repair
from kdiff.diagnosis.model import Candidate, LayerEvidence
from kdiff.metrics import Tolerance


class ScaleSide:
    """Side B: one layer computing x * w, w its one weight."""

    def __init__(self, w: float):
        self.w = np.float32(w)

    def run_layer(self, layer, inputs):
        return [inputs[0] * self.w]

    def set_weights(self, layer, arrays):
        self.w = np.float32(arrays[0])


class Broken:
    ID = "broken-rule"

    @staticmethod
    def candidates(evidence):
        raise ValueError("layer gives outputs of shapes [(2, 15)] on side B, [(2, 16)] on side A")
        yield  # (a generator, as rules are)


class Rescale:
    ID = "rescale"

    @staticmethod
    def candidates(evidence):
        yield Candidate(cause="rescale", fix="use w = 2", code="w = 2", b_weights=(np.float32(2.0),))


def _evidence():
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    return LayerEvidence(layer="scale", b_layer="scale", class_name="Scale", a_inputs=(x,), a_outputs=(x * 2,),
                         b_weights=(("w", np.float32(3.0)),), a_weights=(("w", np.float32(2.0)),))


def test_a_failing_rule_is_noted_and_the_next_rule_still_proves_the_cause(monkeypatch, tmp_path):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    monkeypatch.setattr(repair, "RULES", (Broken, Rescale))
    failed = repair.NotChecked()
    found = repair._prove(ScaleSide(3.0), _evidence(), Tolerance(1e-6, 1e-5), failed)
    assert [finding.cause for finding in found] == ["rescale"] and found[0].verified
    (note,) = failed.notes
    assert note.startswith("rule broken-rule on layer scale could not be checked: ValueError: layer gives outputs")
    log = note.rsplit("the traceback is in ", 1)[1].rstrip(")")
    assert log.startswith(str(tmp_path / "logs")) and "candidates" in open(log).read()


def test_no_note_when_every_rule_runs(monkeypatch):
    monkeypatch.setattr(repair, "RULES", (Rescale,))
    failed = repair.NotChecked()
    assert repair._prove(ScaleSide(3.0), _evidence(), Tolerance(1e-6, 1e-5), failed) and failed.notes == []


def test_a_fix_proven_alone_that_does_not_hold_in_the_whole_model_is_kept_and_what_is_left_said():
    from rich.console import Console

    from kdiff.diagnosis.model import ErrorSize, Finding
    from kdiff.metrics import LayerMetrics
    from kdiff.report import DIVERGED, MATCH, BackendInfo, DiffReport, LayerResult
    from kdiff.ui.findings_view import unexplained_panel

    def metrics(max_abs, max_rel, out):
        return LayerMetrics(max_abs, max_rel, max_abs / 10, 1.0, out, 0, 0, 0, 0, 100)

    layers = (LayerResult("conv_1", "Conv2D", (1,), (1,), MATCH, metrics(1e-6, 2e-6, 0.0)),
              LayerResult("conv_40", "Conv2D", (1,), (1,), DIVERGED, metrics(1.6e-4, 3e-5, 0.01), inbound=("conv_1",),
                          tolerance=Tolerance(1.5e-4, 2e-5, "")))
    info = BackendInfo("a", "theano", {}, "cpu", "", "", "", "", "")
    repaired = DiffReport((info, info), layers, None, {})
    proven = [Finding("conv-kernel-flip", "conv_40", True, ErrorSize(4.0, 1.0), ErrorSize(7e-7, 2e-6), "flip", "")]
    left = repair._left_after_fix(repaired, "conv_40", proven)
    assert left.layer == "conv_40" and left.isolated == ErrorSize(7e-7, 2e-6) and left.input_error == 2e-6
    assert "With the proven fix (conv-kernel-flip), conv_40 alone matches side A, but in the whole model it still " \
           "differs (max abs 0.00016, max rel 3e-05 against atol 0.00015, rtol 2e-05)" in left.reason
    assert left.to_json()["reason"] == left.reason
    console = Console(record=True, width=100)
    console.print(unexplained_panel(left))
    assert "With the proven fix (conv-kernel-flip), conv_40 alone matches" in console.export_text()
    assert "No rule explains" not in console.export_text()
