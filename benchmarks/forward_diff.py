"""Benchmark of issue 2, in one run on one machine:

1. the plain frameworks' own predict and all-layer capture (no kdiff), per backend;
2. kdiff's forward diff of all layers between two backends, workers warm;
3. ZeroMQ transfer of large arrays in kdiff's wire format against an in-process copy.

Usage: ``python benchmarks/forward_diff.py [--a tensorflow] [--b jax] [--repeats 5]``.
Writes benchmarks/results/forward_diff.json and prints a table of ratios."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import zmq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kdiff.session import DiffOptions, DiffSession, Side  # noqa: E402
from kdiff.environments import ensure_env  # noqa: E402
from kdiff.protocol.wire import decode, encode  # noqa: E402
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def plain(backend: str, model: Path, sample: Path, repeats: int) -> dict:
    python = str(ensure_env(backend))
    out = subprocess.run([python, str(HERE / "plain_capture.py"), str(model), str(sample), str(repeats)],
                         env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def kdiff_forward(a: str, b: str, model: Path, sample_path: Path, repeats: int) -> dict:
    forward_only = DiffOptions(gradients=False, noise_floor=False)  # the forward diff alone
    with DiffSession(Side("a", a, str(model)), Side("b", b, str(model)), forward_only) as session:
        sample = session.load_sample(str(sample_path))
        report = session.compare(sample, str(sample_path))
        seconds = median_time(lambda: session.compare(sample, str(sample_path)), repeats)
    return {"forward_diff_s": seconds, "layers": len(report.layers),
            "all_match": report.exit_code == 0, "worst_max_rel": max(l.metrics.max_rel for l in report.layers if l.metrics)}


def transfer(megabytes: int, repeats: int) -> dict:
    array = np.random.default_rng(0).standard_normal(megabytes * 2**20 // 4).astype(np.float32)
    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.setsockopt(zmq.IDENTITY, b"w")
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def send_one():
        dealer.send_multipart(encode({"type": "part"}, {"0": array}), copy=False)

    def round_trip():
        sender = threading.Thread(target=send_one)
        sender.start()
        _, *frames = router.recv_multipart(copy=False)
        _, arrays = decode(frames)
        assert arrays["0"].shape == array.shape
        sender.join()

    wire = median_time(round_trip, repeats)
    copy = median_time(lambda: array.copy(), repeats)
    router.close(); dealer.close(); context.term()
    return {"megabytes": megabytes, "zmq_s": wire, "copy_s": copy,
            "zmq_gb_per_s": array.nbytes / wire / 1e9, "copy_gb_per_s": array.nbytes / copy / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", default="tensorflow")
    parser.add_argument("--b", default="jax")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([str(ensure_env("tensorflow")), str(HERE / "make_model.py"), str(work), "--size", str(args.size)],
                       check=True, capture_output=True)
        model, sample = work / "model.keras", work / "sample.npy"
        results = {
            "model": f"MobileNetV2 {args.size}x{args.size}, batch 8, random weights",
            "machine": f"{os.cpu_count()} cores",
            "plain": {name: plain(name, model, sample, args.repeats) for name in (args.a, args.b)},
            "kdiff": kdiff_forward(args.a, args.b, model, sample, args.repeats),
            "transfer": [transfer(mb, args.repeats) for mb in (16, 128)],
        }
    slower = max(results["plain"].values(), key=lambda r: r["all_layers_s"])
    results["ratios"] = {
        "kdiff_forward_diff_vs_slower_plain_all_layers": results["kdiff"]["forward_diff_s"] / slower["all_layers_s"],
        "kdiff_forward_diff_vs_slower_plain_predict": results["kdiff"]["forward_diff_s"] / max(
            r["predict_s"] for r in results["plain"].values()),
        "zmq_vs_memory_copy_128MB": results["transfer"][1]["zmq_s"] / results["transfer"][1]["copy_s"],
    }
    out = HERE / "results" / "forward_diff.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
