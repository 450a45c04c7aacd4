"""One pass for many faults (issue 16, item 4): what the diagnosis and the repair cost against the plain diff,
on real Theano-era models with many faults, in one run on one machine.

    python -m benchmarks.one_pass                          # the default models, against tensorflow
    python -m benchmarks.one_pass --only k1_resnet50_th --repeats 2

For each model of the corpus (benchmarks/corpus, generated first where missing) three whole commands, each
from a cold start as a user runs them, wall time from the shell:

- ``kdiff M W S --a theano --b tensorflow --no-diagnose``: one forward and backward diff, no diagnosis (the
  reference: the workers' start, both models' load and one compare);
- ``kdiff M W S --a theano --b tensorflow``: the full verdict, every fault named and proven;
- ``kdiff fix M W S --a theano --b tensorflow -o DIR``: the same, the repaired model written and proven loaded
  afresh.

The ratios against the first are the figures (targets: within 2x for the verdict, 3x for ``kdiff fix``). From
each run's progress lines (timestamped as they arrive on stderr) come where the time went and how many whole-
model comparisons the repair loop made for its faults ("N fix(es) proven at ...; comparing again with them":
one per round; a round proves the first divergence and every later layer that differs on its own). Before the
measured runs, one unmeasured ``--no-diagnose`` run per model fills Theano's compile cache (kdiff's own, as
after any user's first run), which would otherwise fall on whichever run comes first. The models differ in their number
of faults (kernel flips: 2, 4, 13, 17), which shows how the cost grows with it.
Results: benchmarks/results/one_pass.json, and a table printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.corpus import generate  # noqa: E402
from benchmarks.corpus.run import TreeMemory, _commit, _memory_gb, ensure_generated  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "one_pass.json"
MODELS = ("ex_mnist_cnn_cf", "ex_cifar10_cnn_cf", "k1_vgg16_th", "ka_vgg16_cf", "k1_resnet50_th")
MODES = ("no_diagnose", "verdict", "fix")
ROUND = "fix(es) proven at"  # the repair loop's stage line, once per round (rich may wrap the rest of it)


def command(mode: str, folder: Path, backend: str, work: Path) -> list[str]:
    files = [str(folder / name) for name in ("model.json", "weights.h5", "sample.npy")]
    sides = ["--a", "theano", "--b", backend, "--json", str(work / f"{mode}.json")]
    if mode == "fix":
        return [sys.executable, "-m", "kdiff", "fix", *files, *sides, "-o", str(work / "fixed")]
    return [sys.executable, "-m", "kdiff", *files, *sides, *(["--no-diagnose"] if mode == "no_diagnose" else [])]


def timed(argv: list[str], timeout: float) -> dict:
    """Run a command: exit code, wall time, peak memory of the process tree, and every stderr line with the
    second it arrived."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=dict(os.environ, COLUMNS="120"))
    memory = TreeMemory(process.pid)
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_err() -> None:
        for line in process.stderr:
            lines.append((round(time.perf_counter() - started, 2), line.rstrip()))

    readers = [threading.Thread(target=read_err, daemon=True),
               threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout, lambda: os.killpg(process.pid, 15))
    timer.start()
    process.wait()
    timer.cancel()
    for reader in readers:
        reader.join()
    return {"exit": process.returncode, "seconds": round(time.perf_counter() - started, 2),
            "peak_tree_rss_mb": round(memory.stop() / 2 ** 20), "stderr": lines, "stdout": "".join(out)}


def phases(lines: list[tuple[float, str]], total: float) -> dict:
    """Where the time went, from the progress lines: until the first comparison was done, the diagnosis and
    its repair rounds, the last gradient comparison with every fix, and writing and proving the repair."""
    def first(*texts: str) -> float | None:
        return next((t for t, line in lines if any(text in line for text in texts)), None)

    compare = first("running the sample through both models")
    diagnosis = first("checking that each side agrees with itself", "diagnosing ")
    gradients = first("comparing gradients with every proven fix applied")
    writing = first("writing side B's repaired model")
    return {"start_and_load_s": compare, "first_compare_s": diagnosis if diagnosis is not None else total,
            "diagnosis_s": round((gradients or writing or total) - diagnosis, 2) if diagnosis is not None else 0.0,
            "gradients_after_fixes_s": round((writing or total) - gradients, 2) if gradients is not None else 0.0,
            "write_and_prove_s": round(total - writing, 2) if writing is not None else 0.0,
            "rounds": sum(ROUND in line for _, line in lines)}


def findings(report_path: Path) -> dict:
    if not report_path.exists():
        return {}
    report = json.loads(report_path.read_text())
    causes: dict[str, int] = {}
    for finding in report.get("findings", []):
        causes[finding["cause"]] = causes.get(finding["cause"], 0) + 1
    after = report.get("after_fixes") or {}
    return {"causes": causes, "faults": sum(causes.values()), "unexplained": bool(report.get("unexplained")),
            "after_fixes_first_divergence": after.get("first_divergence"),
            "after_fixes_first_grad_divergence": after.get("first_grad_divergence"),
            "written_verified": (report.get("written") or {}).get("verified")}


def run_model(name: str, corpus: Path, backend: str, repeats: int, timeout: float) -> dict:
    folder = corpus / name
    record: dict = {"model": name, "backend": backend, "runs": {mode: [] for mode in MODES}}
    with tempfile.TemporaryDirectory(prefix=f"kdiff-one-pass-{name}-") as tmp:
        work = Path(tmp)
        warm_up = timed(command("no_diagnose", folder, backend, work), timeout)
        record["warm_up_s"] = warm_up["seconds"]
        for repeat in range(repeats):
            for mode in MODES:  # interleaved: a slow minute of the machine weighs on every mode alike
                argv = command(mode, folder, backend, work)
                ran = timed(argv, timeout)
                run = {"exit": ran["exit"], "seconds": ran["seconds"], "peak_tree_rss_mb": ran["peak_tree_rss_mb"],
                       **phases(ran["stderr"], ran["seconds"]), **findings(work / f"{mode}.json"),
                       "progress": [f"{t:7.2f}  {line}" for t, line in ran["stderr"] if line.startswith("kdiff:")]}
                if ran["exit"] not in (0, 1):
                    run["error"] = [line for _, line in ran["stderr"]][-12:]
                record["runs"][mode].append(run)
                print(f"{name} {mode} #{repeat + 1}: exit {run['exit']}, {run['seconds']:.1f} s, "
                      f"{run.get('faults', 0)} fault(s), {run['rounds']} round(s)", flush=True)
    median = {mode: statistics.median(r["seconds"] for r in runs) for mode, runs in record["runs"].items()}
    record["median_s"] = median
    record["verdict_ratio"] = round(median["verdict"] / median["no_diagnose"], 2)
    record["fix_ratio"] = round(median["fix"] / median["no_diagnose"], 2)
    record["command"] = " ".join(["python"] + command("verdict", folder, backend, Path("WORK"))[1:]).replace(
        str(Path.home()), "~")
    return record


def table(records: list[dict]) -> str:
    rows = ["| model | faults | rounds | --no-diagnose | verdict | × | kdiff fix | × | verdict: first compare / "
            "diagnosis / gradients after fixes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in records:
        verdict = r["runs"]["verdict"][0]
        rows.append(f"| `{r['model']}` | {verdict.get('faults', 0)} | {verdict['rounds']} | "
                    f"{r['median_s']['no_diagnose']:.1f} s | {r['median_s']['verdict']:.1f} s | {r['verdict_ratio']:.2f} | "
                    f"{r['median_s']['fix']:.1f} s | {r['fix_ratio']:.2f} | {verdict['first_compare_s']:.1f} / "
                    f"{verdict['diagnosis_s']:.1f} / {verdict['gradients_after_fixes_s']:.1f} s |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", default=list(MODELS), help="corpus entries")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each command (the median is kept)")
    parser.add_argument("--corpus", type=Path, default=Path(generate.default_out()))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one command")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    ensure_generated(generate.selected(args.only, False), args.corpus, False, args.timeout)
    records = [run_model(name, args.corpus, args.backend, args.repeats, args.timeout) for name in args.only]
    results = {"benchmark": "one pass for many faults (issue 16 item 4)", "measured": time.strftime("%Y-%m-%d"),
               "kdiff_commit": _commit(), "load_average_before": round(os.getloadavg()[0], 2),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_memory_gb()} GiB, "
                          f"Python {platform.python_version()}", "models": records}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
