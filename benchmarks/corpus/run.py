"""Run kdiff on the corpus of real architectures (issue 13, item 4), against tensorflow, jax and torch:

    python -m benchmarks.corpus.run                       # generate what is missing, then run everything
    python -m benchmarks.corpus.run --only ka_vgg16_cf k1_vgg16_th --backends tensorflow
    python -m benchmarks.corpus.run --report-only         # rewrite RESULTS.md from corpus.json

For every model generate.py wrote (generated first, in the Theano environments, where its folder is missing)
and every backend: ``kdiff MODEL.json WEIGHTS.h5 SAMPLE.npy --a theano --b BACKEND --json R --write-fixed DIR``
(one run: the verdict, its findings and the written repair, which kdiff loads afresh and compares with Theano),
then benchmarks/corpus/check_fixed.py loads DIR/model.keras in that backend's environment as a user would and
compares its prediction with theano_prediction.npy. Each run's wall time and peak memory (the largest process,
from wait4's rusage, and the whole process tree's resident memory summed, sampled every 0.2 s) are recorded.
Results go to benchmarks/results/corpus.json (merged with what is there: --only refreshes those entries) and
benchmarks/corpus/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.corpus import generate  # noqa: E402  (plain Python: the entries, no Keras)

RESULTS_JSON = REPO / "benchmarks" / "results" / "corpus.json"
RESULTS_MD = HERE / "RESULTS.md"
BACKENDS = ("tensorflow", "jax", "torch")
REPRODUCES = 1e-4   # |fixed - Theano| / max |Theano|: float32 noise of a deep model stays well under it


# --- running --------------------------------------------------------------------------------------------


class TreeMemory:
    """The summed resident memory of a process and all its descendants, sampled until stopped."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(self.every)

    def _tree_rss(self) -> int:
        parents, rss = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        total, tree = 0, {self.pid}
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        for pid in tree:
            total += rss.get(pid, 0)
        return total

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def measured(command: list[str], timeout: float, env=None) -> dict:
    """Run a command: its exit code, output, wall time, peak memory."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    memory = TreeMemory(process.pid)
    fired = []

    def stop() -> None:
        fired.append(True)
        os.killpg(process.pid, 15)

    timer = threading.Timer(timeout, stop)
    timer.start()
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((process.stdout, out), (process.stderr, err))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    timer.cancel()
    timer_fired = bool(fired)
    return {"exit": process.returncode, "stdout": "".join(out), "stderr": "".join(err),
            "seconds": round(time.perf_counter() - started, 1), "timed_out": timer_fired,
            "max_process_rss_mb": round(usage.ru_maxrss / 1024),
            "peak_tree_rss_mb": round(memory.stop() / 2 ** 20)}


def run_one(folder: Path, backend: str, work: Path, timeout: float) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    report_path, fixed = work / f"{backend}.json", work / f"{backend}-fixed"
    for stale in (report_path,):
        if stale.exists():
            stale.unlink()
    command = [sys.executable, "-m", "kdiff", str(folder / "model.json"), str(folder / "weights.h5"),
               str(folder / "sample.npy"), "--a", "theano", "--b", backend, "--json", str(report_path),
               "--write-fixed", str(fixed)]
    if meta.get("custom_objects"):
        command += ["--custom-objects", str(REPO / meta["custom_objects"])]
    if fixed.exists():
        for old in fixed.iterdir():
            old.unlink()
    load = os.getloadavg()[0]
    ran = measured(command, timeout)
    result = {"backend": backend, "load_average_before": round(load, 2), "command": " ".join(["python"] + command[1:]).replace(str(Path.home()), "~"),
              "exit": ran["exit"], "seconds": ran["seconds"], "timed_out": ran["timed_out"],
              "max_process_rss_mb": ran["max_process_rss_mb"], "peak_tree_rss_mb": ran["peak_tree_rss_mb"]}
    if ran["exit"] not in (0, 1):
        result["error"] = _last_lines(ran["stderr"] or ran["stdout"], 12)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report is not None:
        result.update(verdict(report))
    result["flips_expected"] = flippable_convs(folder / "model.json", {
        layer["name"]: layer["a_shape"] for layer in (report or {}).get("layers", []) if layer.get("a_shape")})
    written = fixed / "model.keras"
    if written.exists() and result.get("written_verified"):
        result["fixed_model"] = check_fixed(written, folder, backend, meta, timeout)
    return result


def verdict(report: dict) -> dict:
    findings = report.get("findings") or []
    after = report.get("after_fixes")
    written = report.get("written")
    first = report.get("first_divergence")
    unexplained = report.get("unexplained")
    return {"first_divergence": first["layer"] if first else None,
            "first_grad_divergence": (report.get("first_grad_divergence") or {}).get("layer"),
            "findings": [{"cause": f["cause"], "layer": f["layer"], "verified": f["verified"]} for f in findings],
            "unexplained": unexplained,
            "after_fixes_all_match": after["all_match"] if after else None,
            "after_fixes_first_divergence": (after.get("first_divergence") or {}).get("layer") if after else None,
            "after_fixes_first_grad_divergence": (after.get("first_grad_divergence") or {}).get("layer") if after else None,
            "written_verified": written["verified"] if written else None,
            "written_message": written["message"] if written else None,
            "noise_floor": report.get("noise_floor"),
            "input_warnings": report.get("input_warnings") or [],
            "notes": report.get("notes") or [],
            "layers": len(report.get("layers") or []),
            "versions": {side: report["backends"][side]["versions"] for side in report.get("backends", {})}}


# kdiff/diagnosis/rules/conv_kernel_flip.py's classes (Keras 1 and 2 names): Theano flips their kernels, a
# kernel of spatial size 1 is its own flip; separable and depthwise kernels load as stored
FLIPPED_CLASSES = {"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Conv3DTranspose", "Convolution1D",
                   "Convolution2D", "Convolution3D", "Deconvolution2D", "AtrousConvolution1D", "AtrousConvolution2D",
                   "ConvLSTM2D"}
RECURRENT_CONVS = {"ConvLSTM2D"}  # its input (N, T, ...): each step's two convolutions flip (conv-kernel-flip)


def flippable_convs(model_json: Path, shapes: dict | None = None) -> dict | None:
    """How many kernel flips a Theano model should get against a correlating backend: its convolutions (of the
    classes Theano flips), how many of them have a kernel larger than 1 along a spatial axis whose input is
    larger than 1 (`flippable`), and how many have a larger kernel only along axes of size 1 (`invisible`: a
    'same' conv of a 1×1 input uses the kernel's centre alone, flipped or not; ResNet50's res5 convs at 32×32).
    `shapes`: each layer's output shape (the report's a_shape), for the convs' input sizes."""
    try:
        config = json.loads(model_json.read_text())
    except (OSError, ValueError):
        return None
    shapes = dict(shapes or {})
    counts = {"convs": 0, "flippable": 0, "invisible": 0}

    def name_of(layer_config):
        return layer_config.get("name") or (layer_config.get("config") or {}).get("name")

    def walk(layer_config, previous=None):
        body = layer_config.get("config")
        if isinstance(body, list):          # Keras 1/2.0 Sequential
            children = body
        elif isinstance(body, dict) and isinstance(body.get("layers"), list):
            children = body["layers"]
        else:
            children = None
        if children is not None:
            sequential = layer_config.get("class_name") == "Sequential"
            for child in children:
                child_body = child.get("config") or {}
                if isinstance(child_body, dict) and child_body.get("batch_input_shape"):
                    shapes.setdefault(f"{name_of(child)}:input", child_body["batch_input_shape"])
                walk(child, previous if sequential else None)
                previous = name_of(child)
            return
        if isinstance(body, dict) and isinstance(body.get("layer"), dict):   # TimeDistributed, Bidirectional
            walk(body["layer"])
            return
        if layer_config.get("class_name") not in FLIPPED_CLASSES or not isinstance(body, dict):
            return
        counts["convs"] += 1
        sizes = body.get("kernel_size") or [body.get(k) for k in ("nb_row", "nb_col", "filter_length",
                                                                  "kernel_dim1", "kernel_dim2", "kernel_dim3")
                                            if body.get(k) is not None]
        sizes = [int(s) for s in ([sizes] if isinstance(sizes, int) else sizes)]
        if not any(size > 1 for size in sizes):
            return
        nodes = layer_config.get("inbound_nodes") or []
        source = nodes[0][0][0] if nodes and nodes[0] else previous
        shape = shapes.get(f"{name_of(layer_config)}:input") or shapes.get(source)
        if shape is not None and layer_config.get("class_name") in RECURRENT_CONVS:
            shape = [shape[0], *shape[2:]]  # (the time axis aside: its two convolutions see one frame)
        if shape is None or len(shape) != len(sizes) + 2:
            counts["flippable"] += 1      # its input's size unknown: counted as visible
            return
        first = body.get("data_format", body.get("dim_ordering")) in ("channels_first", "th") and len(sizes) > 1
        spatial = shape[2:] if first else shape[1:-1]
        visible = any(size > 1 and (extent is None or extent > 1) for size, extent in zip(sizes, spatial))
        counts["flippable" if visible else "invisible"] += 1

    for layer in (config.get("config") or {}).get("layers", []) if isinstance(config.get("config"), dict) else []:
        body = layer.get("config") or {}
        if layer.get("class_name") == "InputLayer" and body.get("batch_input_shape"):
            shapes.setdefault(name_of(layer), body["batch_input_shape"])
    walk(config)
    return counts


def check_fixed(model: Path, folder: Path, backend: str, meta: dict, timeout: float) -> dict:
    from kdiff.environments import ensure_env

    command = [str(ensure_env(backend)), str(HERE / "check_fixed.py"), str(model), str(folder / "sample.npy"),
               str(folder / "theano_prediction.npy")]
    if meta.get("custom_objects"):
        command += ["--custom-objects", str(REPO / meta["custom_objects"])]
    ran = measured(command, timeout, env=dict(os.environ, KERAS_BACKEND=backend))
    lines = [line for line in ran["stdout"].splitlines() if line.startswith("{")]
    if ran["exit"] != 0 or not lines:
        return {"reproduces": False, "error": _last_lines(ran["stderr"], 8)}
    checked = json.loads(lines[-1])
    if "error" in checked:
        return {"reproduces": False, **checked}
    return {"reproduces": checked["max_rel_to_scale"] <= REPRODUCES, **checked, "seconds": ran["seconds"]}


def _last_lines(text: str, count: int) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()][-count:]


# --- generating -----------------------------------------------------------------------------------------


def ensure_generated(entries, corpus: Path, regenerate: bool, timeout: float) -> list[dict]:
    """Write the entries whose folders are missing, each Keras major in its own Theano environment."""
    from kdiff.environments import ensure_env

    log = []
    for major, env in ((2, "theano"), (1, "theano-keras1")):
        names = [e.name for e in entries if e.keras == major and (regenerate or not (corpus / e.name / "meta.json").exists())]
        if not names:
            continue
        print(f"generating {len(names)} model(s) with Keras {major} on Theano: {' '.join(names)}", flush=True)
        ran = measured([str(ensure_env(env, print)), str(HERE / "generate.py"), "--out", str(corpus), "--only", *names],
                       timeout * len(names))
        for line in ran["stdout"].splitlines():
            if line.startswith("{"):
                log.append(json.loads(line))
                print("  " + line, flush=True)
        if ran["exit"] != 0:
            print("\n".join(_last_lines(ran["stderr"], 20)), flush=True)
            raise SystemExit(f"generate.py failed in the {env} environment (exit {ran['exit']})")
    return log


# --- reporting ------------------------------------------------------------------------------------------


def cell(run: dict | None) -> str:
    if run is None:
        return "–"
    if run.get("timed_out"):
        return f"**timed out** ({run['seconds']:.0f} s)"
    if run["exit"] == 2 and any("not supported yet" in line for line in run.get("error", [])):
        refused = next(line for line in run["error"] if "not supported yet" in line).replace("error: ", "")
        return f"refused up front (exit 2: {refused})"
    if run["exit"] not in (0, 1):
        return f"**exit {run['exit']}** ({run['seconds']:.0f} s)"
    causes: dict[str, list] = {}
    for finding in run.get("findings", []):
        causes.setdefault(finding["cause"], []).append(finding["verified"])
    named = ", ".join(f"{cause} ×{len(v)}{' ✓' if all(v) else ' (unverified ' + str(v.count(False)) + ')'}"
                      for cause, v in causes.items())
    text = "match" if run["exit"] == 0 else (named or "diverges, no cause")
    expected = (run.get("flips_expected") or {}).get("flippable")
    found = len(causes.get("conv-kernel-flip", []))
    if expected is not None and found != expected:
        text += f" (**{found} of {expected} kernel flips**)"
    if run["exit"] == 1:
        if run.get("unexplained"):
            text += "; **unexplained**"
        fixed = run.get("fixed_model")
        if fixed:
            text += (f"; fix ✓ {fixed['max_rel_to_scale']:.0e}" if fixed.get("reproduces")
                     else "; **fix does not reproduce**")
        elif run.get("written_verified") is False:
            text += "; **fix not verified**"
        elif run.get("after_fixes_all_match") is False:
            text += "; **after fixes: no match**"
        if run.get("after_fixes_first_grad_divergence"):
            text += f"; **gradients after fixes diverge at `{run['after_fixes_first_grad_divergence']}`**"
    skipped = [note for note in run.get("notes", []) if note.startswith("gradients were not compared")]
    if skipped:
        text += "; **gradients not compared** (" + skipped[0].rsplit(": ", 1)[-1][:80] + ")"
    return f"{text} ({run['seconds']:.0f} s, {run['peak_tree_rss_mb'] / 1024:.1f} GB)"


def markdown(results: dict) -> str:
    models = results["models"]
    backends = [b for b in BACKENDS if any(b in m.get("runs", {}) for m in models.values())]
    lines = ["# The corpus: real Theano-era architectures written by others", "",
             "Generated by `benchmarks/corpus/generate.py` (the original code on Theano: Keras 2.3.1's and "
             "Keras 1.2.2's `keras.applications`, Keras 2.3.1's examples; random calibrated weights, 2 samples) "
             "and run by `python -m benchmarks.corpus.run`: for each model and backend, "
             "`kdiff MODEL WEIGHTS SAMPLE --a theano --b BACKEND --write-fixed DIR` (verdict, findings, the "
             "repaired Keras 3 model written and checked afresh by kdiff), then the written `model.keras` loaded "
             "as a user would (`benchmarks/corpus/check_fixed.py`) and its prediction compared with Theano's.", "",
             f"Machine: {results.get('machine', '?')}. Measured {results.get('measured', '?')}, kdiff at commit "
             f"{results.get('kdiff_commit', '?')}.", "",
             "Each cell: the causes kdiff named (×count, ✓ = every one verified), or `match` (exit 0); `fix ✓ e` "
             f"= the written model reproduces Theano's prediction to e = max|Δ| / max|Theano| (≤ {REPRODUCES:g}); "
             "then the wall time of the whole kdiff run (both workers started, forward and backward diff, "
             "diagnosis, the written model's check) and the peak resident memory of kdiff's process tree "
             "(per run in corpus.json: also the largest single process, and the 1-minute load average before the "
             "run: other jobs sharing the machine lengthen the times).", "",
             "The flips column: how many of the model's convolutions (of the classes whose kernels Theano flips; "
             "their total in brackets) have a kernel larger than 1 along an axis whose input is larger than 1: "
             "the `conv-kernel-flip` findings a correlating backend should get (a 1×1 kernel is its own flip, "
             "and a 'same' 3×3 conv of a 1×1 input uses the kernel's centre alone: `invisible`, no finding "
             "expected, the written model correct for the model's input size); a cell says so where the count "
             "found differs.", "",
             "| model | source | layers | parameters | flips expected (of convs) | " + " | ".join(backends) + " |",
             "| --- | --- | ---: | ---: | ---: | " + " | ".join("---" for _ in backends) + " |"]
    refused, problems = [], []
    for name in sorted(models, key=_order):
        model = models[name]
        meta = model.get("meta", {})
        if not meta.get("built", False):
            refused.append(f"- `{name}` ({meta.get('builder', '?')}, {meta.get('data_format', '?')}): "
                           f"{meta.get('refusal', 'not built')}")
            continue
        runs = model.get("runs", {})
        source = {generate.KA: "keras_applications", generate.K1A: "Keras 1.2.2 apps",
                  generate.EX: "Keras 2.3.1 examples"}.get(meta.get("source"), meta.get("source"))
        fmt = meta.get("data_format_used", meta.get("data_format"))
        flips = next((r["flips_expected"] for r in runs.values() if r.get("flips_expected")), None)
        if flips is None or "invisible" not in flips or any(
                "notes" not in r for r in runs.values() if r["exit"] in (0, 1)):   # recorded before the runner counted them: from the
            folder = Path(generate.default_out()) / name     # model file and the report, where they are
            for backend, run in runs.items():
                report = folder.parent / "_runs" / name / f"{backend}.json"
                saved_report = json.loads(report.read_text()) if report.exists() else {}
                layers = saved_report.get("layers", [])
                for key, value in (verdict(saved_report) if saved_report else {}).items():
                    run.setdefault(key, value)
                run["flips_expected"] = flippable_convs(folder / "model.json", {
                    layer["name"]: layer["a_shape"] for layer in layers if layer.get("a_shape")})
                flips = flips if flips and "invisible" in flips else run["flips_expected"]
        if flips:
            flips = f"{flips['flippable']} ({flips['convs']}" + (
                f"; {flips['invisible']} invisible at 1×1)" if flips.get("invisible") else ")")
        else:
            flips = "?"
        lines.append(f"| `{name}` | {source}, {fmt} | {meta.get('layers', '?')} | {meta.get('parameters', 0):,} | "
                     f"{flips} | " + " | ".join(cell(runs.get(b)) for b in backends) + " |")
        for backend, run in runs.items():
            issue = problem(run)
            if issue:
                problems.append(f"- `{name}` vs {backend}: {issue}")
    if refused:
        lines += ["", "## Refused by the original code on Theano", ""] + refused
    if problems:
        lines += ["", "## Crashes, unexplained divergences, repairs that do not reproduce", ""] + problems
    notes = results.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def problem(run: dict) -> str | None:
    if run.get("timed_out"):
        return f"timed out after {run['seconds']:.0f} s; command: `{run['command']}`"
    if run["exit"] not in (0, 1):
        return f"exit {run['exit']}: `{' / '.join(run.get('error', [])[-3:])}`; command: `{run['command']}`"
    if run["exit"] == 1 and run.get("unexplained"):
        unexplained = run["unexplained"]
        where = unexplained.get("layer") if isinstance(unexplained, dict) else unexplained
        return f"unexplained divergence at `{where}`: {json.dumps(unexplained)[:400]}"
    fixed = run.get("fixed_model")
    if run["exit"] == 1 and fixed is not None and not fixed.get("reproduces"):
        return f"the written model does not reproduce Theano: {json.dumps(fixed)[:300]}"
    if run["exit"] == 1 and run.get("written_verified") is False:
        return f"kdiff did not verify the written model: {run.get('written_message')}"
    skipped = [note for note in run.get("notes", []) if note.startswith("gradients were not compared")]
    if skipped:
        return f"{skipped[0]}; command: `{run['command']}`"
    if run["exit"] == 1 and run.get("after_fixes_first_grad_divergence"):
        return (f"the forward pass matches after every proven fix, the gradients do not (first at "
                f"`{run['after_fixes_first_grad_divergence']}`, no cause named); command: `{run['command']}`")
    expected = (run.get("flips_expected") or {}).get("flippable")
    found = sum(1 for f in run.get("findings", []) if f["cause"] == "conv-kernel-flip")
    if expected is not None and run["exit"] in (0, 1) and found != expected:
        return f"{found} `conv-kernel-flip` findings where {expected} convolutions have a kernel larger than 1"
    return None


def _order(name: str):
    prefix = {"ka": 0, "k1": 1, "ex": 2}.get(name.split("_")[0], 3)
    return (prefix, name)


def load_results(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"models": {}}


def save(results: dict, json_path: Path, markdown_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    markdown_path.write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these corpus entries (generate.py --list)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--extended", action="store_true", help="also the deep variants (ResNet101/152, ...)")
    parser.add_argument("--corpus", type=Path, default=Path(generate.default_out()),
                        help="folder of the generated models (default: %(default)s)")
    parser.add_argument("--regenerate", action="store_true", help="write the models again even where they exist")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for one kdiff run (default 3600)")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from corpus.json")
    parser.add_argument("--results", type=Path, default=RESULTS_JSON, help="results JSON (default: %(default)s)")
    parser.add_argument("--markdown", type=Path, default=RESULTS_MD, help="results table (default: %(default)s)")
    args = parser.parse_args()
    results = load_results(args.results)

    def saved() -> None:
        save(results, args.results, args.markdown)

    if args.report_only:
        saved()
        return
    entries = generate.selected(args.only, args.extended)
    ensure_generated(entries, args.corpus, args.regenerate, args.timeout)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {_memory_gb()} GiB, Python {platform.python_version()}"
    results["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    results["kdiff_commit"] = _commit()
    work = args.corpus / "_runs"
    metas = {e.name: json.loads((args.corpus / e.name / "meta.json").read_text()) for e in entries}
    # the cheapest first: a long run's table fills from the top
    for entry in sorted(entries, key=lambda e: (metas[e.name].get("layers", 0), metas[e.name].get("parameters", 0))):
        folder = args.corpus / entry.name
        meta = metas[entry.name]
        record = results["models"].setdefault(entry.name, {})
        record["meta"] = {k: v for k, v in meta.items() if k not in ("traceback", "files")}
        if not meta.get("built"):
            print(f"{entry.name}: refused on Theano: {meta.get('refusal')}", flush=True)
            saved()
            continue
        runs = record.setdefault("runs", {})
        for backend in args.backends:
            (work / entry.name).mkdir(parents=True, exist_ok=True)
            run = run_one(folder, backend, work / entry.name, args.timeout)
            runs[backend] = run
            print(f"{entry.name} vs {backend}: {cell(run)}", flush=True)
            saved()
    saved()


def _commit() -> str:
    """The commit kdiff ran from, with '+changes' where kdiff/ or backends/ differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--", "kdiff", "backends") else "")


def _memory_gb() -> int:
    with open("/proc/meminfo") as f:
        return round(int(f.readline().split()[1]) / 2 ** 20)


if __name__ == "__main__":
    main()
