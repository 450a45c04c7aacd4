"""The HTML report: one self-contained file that opens offline. The page is the JSON report (the
same document ``--json`` writes) embedded as data, drawn in the browser by assets/report.js with
uPlot (assets/uPlot.iife.min.js, MIT, about 50 kB: canvas plots with log scales, no network)."""
from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from kdiff.protocol.json_values import json_safe

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="kdiff {version}">
<title>{title}</title>
<style>{uplot_css}</style>
<style>{css}</style>
</head>
<body>
<main id="report">
<h1>{title}</h1>
<p class="sub">{subtitle}</p>
<noscript>This report draws itself with JavaScript; the same data is in the page as JSON.</noscript>
</main>
<script type="application/json" id="kdiff-report">{data}</script>
<script>{uplot_js}</script>
<script>{js}</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return resources.files("kdiff.ui.html").joinpath("assets", name).read_text(encoding="utf-8")


def _script_safe(json_text: str) -> str:
    """JSON that cannot end the <script> element it is put in, nor open a comment there: every '<'
    (only ever inside a string) written as its escape. The scripts themselves hold no '</'
    (tests/test_html_report.py checks)."""
    return json_text.replace("<", "\\u003c")


def render_html(document: dict, title: str = "kdiff report") -> str:
    """The page for a report's JSON document (a diff's, ``kdiff train``'s or ``kdiff attach``'s)."""
    from kdiff import __version__

    data = json.dumps(json_safe(document), allow_nan=False, ensure_ascii=True)
    backends = document.get("backends") if isinstance(document.get("backends"), dict) else {}
    names = [str(side.get("name", "?")) if isinstance(side, dict) else "?" for side in
             (backends.get("a"), backends.get("b"))]
    kind = "training steps" if isinstance(document.get("steps"), list) else \
        "a live run" if isinstance(document.get("live"), list) else "layer by layer"
    subtitle = f"side A: {names[0]} · side B: {names[1]} · {kind} · kdiff {document.get('kdiff_version', __version__)}"
    return TEMPLATE.format(version=html.escape(__version__), title=html.escape(title), subtitle=html.escape(subtitle),
                           uplot_css=_asset("uPlot.min.css"), css=_asset("report.css"), data=_script_safe(data),
                           uplot_js=_asset("uPlot.iife.min.js"), js=_asset("report.js"))


def write_html(document: dict, path: str | Path, title: str = "kdiff report") -> None:
    Path(path).write_text(render_html(document, title), encoding="utf-8")


def notebook_html(document: dict, title: str = "kdiff report", height: int = 900) -> str:
    """The page in an <iframe srcdoc>, for a notebook's output cell: its scripts and styles stay in
    their own document, whatever the notebook's."""
    page = html.escape(render_html(document, title), quote=True)
    return (f'<iframe srcdoc="{page}" style="width: 100%; height: {height}px; border: 1px solid #dde2e8" '
            f'sandbox="allow-scripts" title="{html.escape(title)}"></iframe>')
