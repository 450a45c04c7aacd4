"""How kdiff's derived tolerance grows with depth, and how much of it the real error uses (issue 16, item 1):

    python -m benchmarks.corpus.depth_table                      # the deep models run so far, vs tensorflow
    python -m benchmarks.corpus.depth_table --models ka_resnet50_cf ka_vgg16_cf --backend jax

Reads the JSON reports that benchmarks/corpus/run.py left in CORPUS/_runs/NAME/BACKEND.json and the model's
own model.json (for each layer's depth: the longest chain of layers from the input to it). For a model
that diverged and was repaired (a channels_first one: kernel flips) the error is the one measured after
every proven fix (the report's ``after_fixes.layers``); for one that matched, the forward diff's own.
Per sampled layer: its position in the report, its depth, the derived rtol and atol (atol = rtol times the
smaller side's largest |output|, see kdiff/tolerances.py), the measured max |A - B| and that over atol (an
element matches when |A - B| <= atol + rtol·max(|a|, |b|): between atol, at values near 0, and 2·atol, at
the largest, so max|Δ|/atol < 1 means inside the tolerance everywhere). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from benchmarks.corpus import generate  # noqa: E402

DEEP = ("ka_resnet50_cf", "ka_resnet50_cl", "ka_vgg16_cf", "ka_vgg16_cl", "ka_densenet121_cf", "ka_densenet121_cl",
        "ka_inceptionv3_cf", "ka_inceptionv3_cl", "ka_mobilenet_cf", "k1_resnet50_th", "k1_vgg16_th")
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)   # of the way through the model's layers, by depth


def chain_depths(model_json: Path) -> dict[str, int]:
    """Each layer's longest chain of layers from an input (an input layer is 0; Sequential: its position)."""
    config = json.loads(model_json.read_text())
    body = config.get("config")
    layers = body if isinstance(body, list) else body.get("layers", [])
    if config.get("class_name") == "Sequential" or not any(layer.get("inbound_nodes") for layer in layers):
        return {(layer.get("config") or {}).get("name", layer.get("name")): i + 1 for i, layer in enumerate(layers)}
    depth: dict[str, int] = {}
    for layer in layers:   # model.json lists a functional model's layers in an order its inputs come first
        sources = [inbound[0] for node in layer.get("inbound_nodes") or [] for inbound in node]
        depth[layer["name"]] = 1 + max((depth.get(s, 0) for s in sources), default=-1)
    return depth


def rows_of(report: dict, depths: dict[str, int]) -> tuple[list[dict], str]:
    after = report.get("after_fixes")
    source = "after fixes" if after else "as run"
    layers = []
    for index, layer in enumerate(after["layers"] if after else report["layers"]):
        tolerance = layer.get("tolerance") or {}
        if tolerance.get("atol") is None or layer.get("max_abs") is None or not isinstance(layer["max_abs"], float):
            continue
        layers.append({"index": index + 1, "name": layer["name"], "depth": depths.get(layer["name"]),
                       "class": next((l["class"] for l in report["layers"] if l["name"] == layer["name"]), "?"),
                       "rtol": tolerance["rtol"], "atol": tolerance["atol"], "max_abs": layer["max_abs"],
                       "status": layer.get("status")})
    return layers, source


def sampled(layers: list[dict]) -> list[dict]:
    """The layers at FRACTIONS of the deepest depth (the last one at that depth or just above), and the layer
    that used most of its tolerance."""
    if not layers:
        return []
    deepest = max(l["depth"] or l["index"] for l in layers)
    picked = []
    for fraction in FRACTIONS:
        target = max(1, round(fraction * deepest))
        candidates = [l for l in layers if (l["depth"] or l["index"]) >= target]
        chosen = min(candidates, key=lambda l: ((l["depth"] or l["index"]), -l["index"]))
        if chosen not in picked:
            picked.append(chosen)
    tightest = max(layers, key=lambda l: l["max_abs"] / l["atol"] if l["atol"] else 0)
    if tightest not in picked:
        picked.append(dict(tightest, tightest=True))
    else:
        picked[picked.index(tightest)] = dict(tightest, tightest=True)
    return sorted(picked, key=lambda l: l["index"])


def table(corpus: Path, models, backend: str) -> str:
    lines = [f"| model (vs {backend}) | layer (class) | index / layers | depth | rtol | atol | max \\|Δ\\| | max\\|Δ\\| / atol |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    missing = []
    for name in models:
        report_path = corpus / "_runs" / name / f"{backend}.json"
        if not report_path.exists():
            missing.append(name)
            continue
        report = json.loads(report_path.read_text())
        depths = chain_depths(corpus / name / "model.json")
        layers, source = rows_of(report, depths)
        for row in sampled(layers):
            mark = " **(tightest)**" if row.get("tightest") else ""
            lines.append(f"| `{name}` ({source}) | `{row['name']}` ({row['class']}){mark} | {row['index']} / {len(layers)} | "
                         f"{row['depth'] if row['depth'] is not None else '?'} | {row['rtol']:.2e} | {row['atol']:.2e} | "
                         f"{row['max_abs']:.1e} | {row['max_abs'] / row['atol']:.2f} |")
    text = "\n".join(lines) + "\n"
    if missing:
        text += f"\n(not run yet against {backend}: {', '.join(missing)})\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEEP))
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--corpus", type=Path, default=Path(generate.default_out()))
    args = parser.parse_args()
    print(table(args.corpus, args.models, args.backend), end="")


if __name__ == "__main__":
    main()
