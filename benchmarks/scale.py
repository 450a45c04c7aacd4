"""Benchmark of issue 4 ("Scale"), in one run on one machine:

1. the plain frameworks' own all-layer forward+backward (no kdiff), tensorflow and torch:
   every layer's output plus the gradient of ``sum(output * P)`` with respect to every layer
   output and every weight (benchmarks/plain_forward_backward.py, run in each kdiff env), before
   and after the kdiff part (the mean of the two medians is the reference);
2. kdiff's forward+backward diff of all layers, tensorflow vs torch, workers warm, without and
   with the noise floor;
3. the coordinator's peak memory during those compares, in a coordinator subprocess of its own
   (``ru_maxrss`` before the workers start and after the compares), against the largest single
   layer pair (side A's largest layer output, float32, times two);
4. a profile of one compare: where the time goes (waiting on the workers, comparing in the
   coordinator), when each side's layer outputs and gradients arrived (one forward_backward call
   per side streams both), and how many bytes the coordinator held, unpaired, at most.

Usage: ``python benchmarks/scale.py [--model mobilenetv2|resnet50] [--repeats 5]``.
Writes benchmarks/results/scale.json (scale-resnet50.json for ResNet50) and prints a table."""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

A, B = "tensorflow", "torch"


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def plain(backend: str, model: Path, sample: Path, repeats: int) -> dict:
    from kdiff.environments import ensure_env

    python = str(ensure_env(backend))
    out = subprocess.run([python, str(HERE / "plain_forward_backward.py"), str(model), str(sample), str(repeats)],
                         env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"plain {backend} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def coordinator(model: str, sample_path: str, repeats: int) -> dict:
    """The kdiff part, in a process of its own so that its peak RSS is kdiff's alone."""
    import kdiff.passes as diff_module
    import kdiff.gradients as gradients_module
    from kdiff.session import DiffOptions, DiffSession, Side
    from kdiff.streams import partners

    baseline = rss_bytes()
    rss = {"baseline": baseline}
    session = DiffSession(Side("a", A, model), Side("b", B, model), DiffOptions(noise_floor=False))
    sample = session.load_sample(sample_path)
    start = time.perf_counter()
    with session:
        startup = time.perf_counter() - start
        rss["after_start"] = rss_bytes()
        report = session.compare(sample, sample_path, gradients=True, noise_floor=False)  # warm-up
        rss["after_warmup_compare"] = rss_bytes()
        fb, fb_times = median_time(lambda: session.compare(sample, gradients=True, noise_floor=False), repeats)
        rss["after_forward_backward"] = rss_bytes()
        fb_noise, fb_noise_times = median_time(lambda: session.compare(sample, gradients=True, noise_floor=True),
                                               repeats)
        rss["after_noise_floor"] = rss_bytes()
        forward, _ = median_time(lambda: session.compare(sample, gradients=False, noise_floor=False), repeats)
        noise_alone, _ = median_time(lambda: session.noise_floor(sample), max(1, repeats // 2))
        profile = profile_compare(session, sample, diff_module, gradients_module, partners)
    largest = max((layer for layer in report.layers if layer.a_shape), key=lambda l: math.prod(l.a_shape))
    layer_bytes = math.prod(largest.a_shape) * 4
    grads_compared = sum(1 for layer in report.layers if layer.grad is not None)
    return {
        "startup_s": startup,
        "forward_backward_s": fb, "forward_backward_times": fb_times,
        "forward_backward_noise_floor_s": fb_noise, "forward_backward_noise_floor_times": fb_noise_times,
        "forward_only_s": forward, "noise_floor_alone_s": noise_alone,
        "layers": len(report.layers), "layers_with_gradients": grads_compared, "notes": list(report.notes),
        "forward_all_match": all(l.metrics is None or l.metrics.matches for l in report.layers),
        "gradients_all_match": all(l.grad is None or l.grad.matches for l in report.layers),
        "rss_bytes": rss, "peak_rss_over_baseline_bytes": rss["after_noise_floor"] - baseline,
        "largest_layer": {"name": largest.name, "a_shape": list(largest.a_shape), "bytes": layer_bytes},
        "largest_layer_pair_bytes": 2 * layer_bytes,
        "profile": profile,
    }


def profile_compare(session, sample, diff_module, gradients_module, partners) -> dict:
    """One forward+backward compare with timers: time blocked waiting for the workers' messages,
    time comparing in the coordinator, when each side's first and last part arrived, and the
    largest number of bytes held unpaired (one side's parts waiting for the other's)."""
    pool = session.pool
    partner = partners(session.pairs)
    clock = {"receive_s": 0.0, "compare_s": 0.0}
    events: list[tuple[float, str, str, str, int]] = []  # (time, side, kind, layer, bytes)
    unpaired = {"now": 0, "max": 0, "max_layers": 0}
    held: dict[tuple[str, str], int] = {}
    original_receive = pool.receive_any
    original_forward = diff_module.compare_outputs
    original_gradient = gradients_module._compare

    def receive_any(pending, deadline, hold=()):
        t = time.perf_counter()
        side, header, arrays = original_receive(pending, deadline, hold)
        now = time.perf_counter()
        clock["receive_s"] += now - t
        size = sum(a.nbytes for a in arrays.values()) if arrays else 0
        kind = header.get("kind", "output") if header.get("type") == "part" else header.get("type", "")
        events.append((now, side, kind, header.get("layer", ""), size))
        if header.get("type") == "part":
            key = (side, header.get("layer"), kind)
            other = (*partner.get(key[:2], (None, None)), kind)
            if other in held:
                unpaired["now"] -= held.pop(other)
            else:
                held[key] = size
                unpaired["now"] += size
                unpaired["max"] = max(unpaired["max"], unpaired["now"])
                unpaired["max_layers"] = max(unpaired["max_layers"], len(held))
        return side, header, arrays

    def timed(fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock["compare_s"] += time.perf_counter() - t
        return wrapper

    pool.receive_any = receive_any
    diff_module.compare_outputs = timed(original_forward)
    gradients_module._compare = timed(original_gradient)
    try:
        # as DiffSession.compare runs it: one forward_backward call on each side
        inputs = session.inputs(sample)
        fused = diff_module.fused_gradients(session, inputs)
        start = time.perf_counter()
        diff_module.forward_pass(session, inputs, fused)
        elapsed = time.perf_counter() - start
    finally:
        pool.receive_any = original_receive
        diff_module.compare_outputs = original_forward
        gradients_module._compare = original_gradient
    return {
        "forward_backward_diff_s": elapsed,
        "coordinator_blocked_receiving_s": clock["receive_s"],
        "coordinator_comparing_s": clock["compare_s"],
        "outputs": _arrivals([e for e in events if e[2] != "gradient"], start),
        "gradients": _arrivals([e for e in events if e[2] != "output"], start),
        "max_unpaired_bytes": unpaired["max"], "max_unpaired_layers": unpaired["max_layers"],
    }


def _arrivals(events: list, start: float) -> dict:
    """Per side: seconds from the command to its first part, its last part and its reply, and bytes received."""
    out = {}
    for side in "ab":
        parts = [e for e in events if e[1] == side and e[2] != "reply"]
        reply = [e for e in events if e[1] == side and e[2] == "reply"]
        out[side] = {"first_part_s": parts[0][0] - start if parts else None,
                     "last_part_s": parts[-1][0] - start if parts else None,
                     "reply_s": reply[0][0] - start if reply else None,
                     "parts": len(parts), "bytes": sum(e[4] for e in parts)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("mobilenetv2", "resnet50"), default="mobilenetv2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--split-cpus", action="store_true",
                        help="give each worker its own half of the CPUs (KDIFF_SPLIT_CPUS=1) instead of kdiff's "
                             "default, both sharing every CPU")
    parser.add_argument("--coordinator", nargs=2, metavar=("MODEL", "SAMPLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["KDIFF_SPLIT_CPUS"] = "1" if args.split_cpus else "0"  # inherited by the coordinator process
    if args.coordinator:
        print(json.dumps(coordinator(*args.coordinator, args.repeats)))
        return
    from kdiff.environments import ensure_env

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([str(ensure_env("tensorflow")), str(HERE / "make_model.py"), str(work), "--size",
                        str(args.size), "--model", args.model], check=True, capture_output=True)
        model, sample = work / "model.keras", work / "sample.npy"
        before = {name: plain(name, model, sample, args.repeats) for name in (A, B)}
        run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--repeats", str(args.repeats),
                              "--coordinator", str(model), str(sample)], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"kdiff coordinator failed:\n{run.stderr[-3000:]}")
        kdiff_results = json.loads(run.stdout.strip().splitlines()[-1])
        # the plain frameworks again after kdiff: their time varies from run to run by 10-20 % on a small
        # machine, so the ratio uses the mean of the medians before and after
        after = {name: plain(name, model, sample, args.repeats) for name in (A, B)}
        plain_results = {name: {**before[name], "forward_backward_s": (before[name]["forward_backward_s"]
                                                                      + after[name]["forward_backward_s"]) / 2,
                                "forward_backward_before_after_s": [before[name]["forward_backward_s"],
                                                                    after[name]["forward_backward_s"]]}
                         for name in (A, B)}
    slower = max(plain_results.values(), key=lambda r: r["forward_backward_s"])
    pair = kdiff_results["largest_layer_pair_bytes"]
    peak = kdiff_results["peak_rss_over_baseline_bytes"]
    name = {"mobilenetv2": "MobileNetV2", "resnet50": "ResNet50"}[args.model]
    results = {
        "model": f"{name} {args.size}x{args.size}, batch 8, random weights",
        "machine": f"{os.cpu_count()} cores",
        "split_cpus": os.environ["KDIFF_SPLIT_CPUS"] == "1",
        "sides": [A, B],
        "plain": plain_results,
        "kdiff": kdiff_results,
        "ratios": {
            "kdiff_forward_backward_vs_slower_plain": kdiff_results["forward_backward_s"] / slower["forward_backward_s"],
            "kdiff_forward_backward_noise_floor_vs_slower_plain":
                kdiff_results["forward_backward_noise_floor_s"] / slower["forward_backward_s"],
            "peak_rss_over_baseline_vs_largest_layer_pair": peak / pair,
            "peak_rss_over_baseline_vs_twice_largest_layer_pair": peak / (2 * pair),
        },
        "goals": {"time": "kdiff forward+backward <= 2x the slower plain framework's",
                  "memory": "coordinator peak < 2x the largest single layer pair + a fixed overhead"},
        "benchmark_s": time.perf_counter() - began,
    }
    out = HERE / "results" / ("scale.json" if args.model == "mobilenetv2" else f"scale-{args.model}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {out.relative_to(HERE.parent)}")


def print_table(r: dict) -> None:
    mb = 2**20
    k, ratios = r["kdiff"], r["ratios"]
    rows = [(f"plain {side}: all-layer forward+backward", f"{p['forward_backward_s']:.3f} s",
             "before/after kdiff {:.3f}/{:.3f} s, forward alone {:.3f} s".format(
                 *p["forward_backward_before_after_s"], p["all_layers_forward_s"])) for side, p in r["plain"].items()]
    rows += [
        ("kdiff forward+backward diff, no noise floor", f"{k['forward_backward_s']:.3f} s",
         f"{ratios['kdiff_forward_backward_vs_slower_plain']:.2f}x the slower plain (goal <= 2x)"),
        ("kdiff forward+backward diff, noise floor on", f"{k['forward_backward_noise_floor_s']:.3f} s",
         f"{ratios['kdiff_forward_backward_noise_floor_vs_slower_plain']:.2f}x the slower plain"),
        ("kdiff forward diff alone / noise floor alone", f"{k['forward_only_s']:.3f} / {k['noise_floor_alone_s']:.3f} s", ""),
        ("coordinator peak RSS over baseline", f"{k['peak_rss_over_baseline_bytes'] / mb:.1f} MiB",
         f"{ratios['peak_rss_over_baseline_vs_twice_largest_layer_pair']:.1f}x twice the largest layer pair "
         f"({2 * k['largest_layer_pair_bytes'] / mb:.1f} MiB; {k['largest_layer']['name']} "
         f"{k['largest_layer']['a_shape']})"),
        ("most bytes held unpaired (one compare)", f"{k['profile']['max_unpaired_bytes'] / mb:.1f} MiB",
         f"{k['profile']['max_unpaired_layers']} layers"),
    ]
    print(r["model"], "-", r["machine"])
    for row in rows:
        print(f"  {row[0]:<48} {row[1]:>14}   {row[2]}")
    p = k["profile"]
    print(f"  profile: forward+backward diff {p['forward_backward_diff_s']:.3f} s; "
          f"coordinator blocked receiving {p['coordinator_blocked_receiving_s']:.3f} s, "
          f"comparing {p['coordinator_comparing_s']:.3f} s")
    for phase in ("outputs", "gradients"):
        for side in "ab":
            s = p[phase][side]
            print(f"    {phase:8} side {side}: first part {s['first_part_s']:.3f} s, last part {s['last_part_s']:.3f} s,"
                  f" {s['parts']} parts, {s['bytes'] / mb:.0f} MiB")


if __name__ == "__main__":
    main()
