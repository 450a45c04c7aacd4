"""The repair loop (kdiff.diagnosis.repair.diagnose) end to end on the numpy stand-in worker
(tests/fake_worker.py, model=conv): two real worker processes over the real protocol, no framework.
Side B holds the model as a faulty port would; the loop must name the cause, prove it by re-running
the layer on side B, keep the fix there, and compare again until the models agree; on a model that
matches, or a divergence no rule explains, it names nothing. Fast tier: about a second a test."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from kdiff.diagnosis.repair import diagnose
from kdiff.diff import run_diff
from kdiff.progress import Progress
from kdiff.report import MATCH
from kdiff.session import DiffOptions, DiffSession, Side

OPTIONS = DiffOptions(derived_tolerances=True, gradients=False)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))  # bug logs, if any, stay in the test's folder
    model = tmp_path / "model.json"  # the stand-in seeds its weights from these bytes; kdiff reads no layers from it
    model.write_text('{"class_name": "Sequential", "config": {"layers": []}}')
    sample = tmp_path / "sample.npy"
    np.save(sample, np.random.default_rng(0).standard_normal((4, 2, 6, 5)).astype(np.float32))
    return str(model), str(sample)


def sides(model: str, b_fault: str = "", a_fault: str = "") -> tuple[Side, Side]:
    def side(name, fault):
        options = {"model": "conv", **({"fault": fault} if fault else {})}
        return Side(name, "fake", model, python=sys.executable, worker_module="tests.fake_worker",
                    worker_options=options)
    return side("a", a_fault), side("b", b_fault)


def diagnosed_session(files, b_fault: str, a_fault: str = ""):
    """Compare and diagnose in a session kept open, so that the test can ask side B what it holds after."""
    model, sample_path = files
    session = DiffSession(*sides(model, b_fault, a_fault), OPTIONS, Progress())
    sample = session.load_sample(sample_path)
    session.__enter__()
    report = session.compare(sample, sample_path)
    return session, report, diagnose(session, sample, report, session.tolerances, Progress())


@pytest.fixture
def open_sessions():
    opened = []
    yield opened
    for session in opened:
        session.close()


def test_a_flipped_conv_kernel_on_side_b_is_named_proven_and_kept(files, open_sessions):
    session, report, found = diagnosed_session(files, "flip:conv_1")
    open_sessions.append(session)
    assert report.first_divergence[1].name == "conv_1"
    (finding,) = found.findings
    assert (finding.cause, finding.layer, finding.verified) == ("conv-kernel-flip", "conv_1", True)
    assert finding.before.max_rel > 0.1 and finding.after.max_abs < 1e-5
    assert set(finding.explains) == {"conv_1", "leaky_1", "flatten_1", "dense_1"}
    assert found.unexplained is None and found.not_checked == ()
    # the fix is kept on side B: it now holds side A's kernel, and the whole model matches
    a_kernel = session.clients["a"].weights("conv_1")[0][1]
    assert np.array_equal(session.clients["b"].weights("conv_1")[0][1], a_kernel)
    assert found.repaired.exit_code == 0 and all(layer.status == MATCH for layer in found.repaired.layers)


def test_three_faults_are_proven_one_after_another_weights_and_settings_alike(files, open_sessions):
    session, report, found = diagnosed_session(files, "flip:conv_1,slope:leaky_1,flatten:dense_1")
    open_sessions.append(session)
    assert [(f.cause, f.layer) for f in found.findings] == [
        ("conv-kernel-flip", "conv_1"), ("activation-definition", "leaky_1"), ("flatten-order", "dense_1")]
    assert all(f.verified and f.after.max_abs < 1e-5 for f in found.findings)
    assert "slope" in found.findings[1].fix and "0.3" in found.findings[1].fix
    assert "channels-first rows to channels-last order" in found.findings[2].fix
    b, a = session.clients["b"], session.clients["a"]
    assert b.layer_config("leaky_1")["negative_slope"] == 0.3  # the config change kept (change_layer)
    for layer in ("conv_1", "dense_1"):  # the weight changes kept (set_weights)
        assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a.weights(layer), b.weights(layer)))
    assert found.unexplained is None and found.repaired.exit_code == 0


def test_a_matching_model_names_nothing(files):
    model, sample = files
    report = run_diff(*sides(model), sample, OPTIONS)
    assert report.exit_code == 0 and report.findings == () and report.unexplained is None
    assert report.repaired is None


def test_a_divergence_no_rule_explains_is_left_unexplained_and_side_b_as_it_was(files, open_sessions):
    session, report, found = diagnosed_session(files, "perturb:conv_1")
    open_sessions.append(session)
    assert report.first_divergence[1].name == "conv_1"
    assert found.findings == () and found.repaired is None and found.not_checked == ()
    assert found.unexplained.layer == "conv_1" and found.unexplained.isolated.max_abs == pytest.approx(1e-2, rel=1e-3)
    # conv-kernel-flip and kernel-layout were tried on side B, and each try was undone
    a_weights, b_weights = session.clients["a"].weights("conv_1"), session.clients["b"].weights("conv_1")
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a_weights, b_weights))


def test_a_fault_after_an_unexplained_one_is_not_claimed(files, open_sessions):
    """The loop stops at the first divergence nothing explains: a later flip is not diagnosed past it."""
    session, report, found = diagnosed_session(files, "perturb:conv_1,flatten:dense_1")
    open_sessions.append(session)
    assert found.findings == () and found.unexplained.layer == "conv_1"


def test_a_side_that_disagrees_with_itself_is_named_before_any_rule(files, open_sessions):
    session, report, found = diagnosed_session(files, "noise:leaky_1,flip:conv_1")
    open_sessions.append(session)
    (finding,) = found.findings
    assert (finding.cause, finding.layer, finding.detail["side"]) == ("nondeterministic", "leaky_1", "b")
    assert finding.explains == ("leaky_1", "flatten_1", "dense_1") and found.repaired is None


@pytest.mark.parametrize("errors, kept", [
    ([(2e-6, 1e-4), (1.5e-6, 0.8e-4)], "first"),   # closer by float noise only: the likelier (first) value is kept
    ([(2e-6, 1e-4), (1e-8, 1e-7)], "second"),      # twice as close and more: the value the layer was written with
    ([(3e-6, 2e-4), (2e-6, 1.5e-4), (1e-7, 1e-6)], "third"),
], ids=["noise-decides-nothing", "clearly-closer", "clearly-closer-later"])
def test_of_candidates_within_tolerance_the_first_is_kept_unless_another_is_twice_as_close(errors, kept):
    from kdiff.diagnosis.model import ErrorSize
    from kdiff.diagnosis.repair import _closest

    names = ["first", "second", "third"]
    assert _closest([(ErrorSize(max_abs, max_rel), names[i]) for i, (max_abs, max_rel) in enumerate(errors)]) == kept
