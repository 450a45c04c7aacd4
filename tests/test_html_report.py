"""The HTML report (issue #17), opened in a real headless Chromium: real runs' saved reports
(tests/fixtures/reports/, made by its generate.py) drawn by `kdiff report`, each plot checked to
have drawn on its canvas, a screenshot kept in tests/artifacts/; hostile names stay text; every
mistake with `kdiff report` is exit 2 with a hint; mangled reports never crash the renderer. The
page of a live `kdiff --html` run is checked in tests/test_api.py."""
from __future__ import annotations

import copy
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdiff.saved_report import read_report
from kdiff.ui.html import notebook_html, render_html
from tests.browser import assert_drawn, chromium, open_page

REPORTS = Path(__file__).parent / "fixtures" / "reports"
ASSETS = Path(__file__).parents[1] / "kdiff" / "ui" / "html" / "assets"


@pytest.fixture(scope="module")
def browser():
    return chromium()


def kdiff_report(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdiff", "report", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def saved(name: str) -> dict:
    return json.loads((REPORTS / name).read_text())


def page_of(tmp_path, document: dict, name: str = "r") -> Path:
    source, page = tmp_path / f"{name}.json", tmp_path / f"{name}.html"
    source.write_text(json.dumps(document))
    result = kdiff_report(source, "-o", page)
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
    return page


def test_the_diff_report_draws_its_curves_the_first_divergence_and_the_findings(browser, tmp_path):
    page = page_of(tmp_path, saved("theano_vgg.json"))
    attributes, dom = open_page(browser, page, screenshot="html_report_diff.png")
    # error by layer (relative, absolute), then conv2d_1's picture: B against A, the differences, axes 1-3
    assert_drawn(attributes, plots=7)
    first = re.search(r'<tr class="layer first"[^>]*>(.*?)</tr>', dom).group(1)
    assert "conv2d_1" in first and "diverged ◀ first" in first
    assert dom.count('data-cause="conv-kernel-flip"') == 3 and "proven" in dom
    assert 'layer.set_weights([kernel[::-1, ::-1, :, :], *rest])' in dom
    assert "The divergence starts at layer 'conv2d_1' (#0). With every proven fix applied, every layer matches." in dom
    assert "The first divergence: conv2d_1" in dom and "4×8×16×16" in dom
    assert '<option value="propagated">propagated</option>' in dom  # the status filter offers what is there


def test_a_layer_with_nothing_diverging_has_no_picture_and_still_draws(browser, tmp_path):
    document = saved("theano_vgg.json")
    document.update(first_divergence=None, first_divergence_picture=None, findings=[], after_fixes=None)
    for layer in document["layers"]:
        layer["status"] = "match"
    attributes, dom = open_page(browser, page_of(tmp_path, document))
    assert_drawn(attributes, plots=2)
    assert "All 8 layers match." in dom and "The first divergence" not in dom


def test_the_train_report_draws_the_losses_and_the_worst_update_per_step(browser, tmp_path):
    attributes, dom = open_page(browser, page_of(tmp_path, saved("k1_th_cnn_train.json")),
                                screenshot="html_report_train.png")
    assert_drawn(attributes, plots=2)
    assert "The updates first differ at step 0, weight 'convolution2d_1_W'." in dom
    assert 'data-cause="optimizer-epsilon"' in dom and "keras.optimizers.Adam(epsilon=1e-08)" in dom


def test_the_attach_report_draws_the_followed_runs_losses(browser, tmp_path):
    runs = [{"label": label, "endpoint": f"tcp://127.0.0.1:{port}", "step": 40, "loss": 0.5, "megabytes": 1.0,
             "capture_seconds": 0.1, "losses": [[step, 2.0 / (1 + step) + shift] for step in range(0, 41, 2)]}
            for label, port, shift in (("run A", 5555, 0.0), ("run B", 5556, 0.01))]
    document = {**saved("theano_vgg.json"), "step": 40, "live": runs}
    attributes, dom = open_page(browser, page_of(tmp_path, document), screenshot="html_report_attach.png")
    assert_drawn(attributes, plots=8)
    assert "Live loss of the followed runs" in dom and "run B (tcp://127.0.0.1:5556) snapshot at step 40" in dom


def test_names_from_a_model_file_stay_text(browser, tmp_path):
    hostile = '</script><img src=x onerror="document.title=1"><!--'
    document = saved("theano_vgg.json")
    document["layers"][1]["name"] = hostile
    document["findings"][0]["fix"] = hostile
    attributes, dom = open_page(browser, page_of(tmp_path, document))
    assert_drawn(attributes, plots=7)
    assert "<img" not in dom and "&lt;/script&gt;&lt;img src=x" in dom


def test_the_page_is_one_file_that_needs_no_network():
    page = render_html(saved("theano_vgg.json"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page)
    for asset in ASSETS.iterdir():  # what render_html inlines unescaped cannot end its <script> element
        assert "</" not in asset.read_text() or asset.suffix != ".js", asset
    assert 'sandbox="allow-scripts"' in notebook_html(saved("theano_vgg.json"))


@pytest.mark.parametrize("content, expected", [
    (None, "report not found"),
    (b"\x89PNG\r\n\x1a\n\x00garbage", "is not JSON"),
    (b"[1, 2, 3]", "is JSON but not a kdiff report"),
    (b'{"layers": []}', "is JSON but not a kdiff report"),
    (b"[" * 100_000, "is not JSON"),
], ids=["missing", "binary", "a list", "no version", "nested too deep"])
def test_a_file_that_is_no_report_is_exit_2_with_a_hint(tmp_path, content, expected):
    source = tmp_path / "r.json"
    if content is not None:
        source.write_bytes(content)
    result = kdiff_report(source, "-o", tmp_path / "r.html")
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "hint" in result.stderr.lower() or "pass" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_an_output_in_a_missing_folder_is_exit_2_before_anything_is_read(tmp_path):
    result = kdiff_report(REPORTS / "theano_vgg.json", "-o", tmp_path / "no" / "r.html")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert kdiff_report(REPORTS / "theano_vgg.json").returncode == 2  # -o is required


def _mangled(value, rng: random.Random):
    """The value with one part replaced by something of another type."""
    replacements = [None, 0, -1.5, "nan", "", [], {}, [None], {"x": None}, True, "a" * 300, [1e308, -1e308]]
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: _mangled(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return value[:i] + [_mangled(value[i], rng)] + value[i + 1:]
    return rng.choice(replacements)


def test_mangled_reports_are_refused_or_rendered_never_a_crash(tmp_path):
    rng = random.Random(17)
    originals = [saved("theano_vgg.json"), saved("k1_th_cnn_train.json")]
    for round_ in range(300):
        document = _mangled(copy.deepcopy(rng.choice(originals)), rng)
        source = tmp_path / "r.json"
        source.write_text(json.dumps(document))
        try:
            render_html(read_report(str(source)))
        except Exception as exc:  # noqa: BLE001 -- only kdiff's own input errors may come out
            from kdiff.errors import InputError

            assert isinstance(exc, InputError), f"round {round_}: {exc!r}"


def test_a_mangled_report_shows_why_it_could_not_be_drawn_in_the_page(browser, tmp_path):
    document = saved("theano_vgg.json")
    document["layers"][0] = None
    attributes, dom = open_page(browser, page_of(tmp_path, document))
    assert attributes["rendered"] == "yes" and json.loads(attributes["errors"])
    assert "kdiff: the report could not be drawn" in dom
