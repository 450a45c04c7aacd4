"""Benchmark of issue 6, in one run on one machine:

1. step time of a real Keras 3 training loop (TensorFlow backend, train_on_batch, MLP) without
   the probe, with the probe idle, and with a snapshot every 100 steps, as ratios to the plain
   loop, measured in the same process in alternating phases;
2. the time to take (in the job) and to take and receive (at the coordinator) one snapshot, by
   model size; like ``kdiff attach``, the coordinator names the model file it holds (by the hash the
   probe gives), so the file goes with the first snapshot only (``capture_with_model_file_s``: one
   that carries it).

Usage: ``python benchmarks/attach_overhead.py [--width 512] [--rounds 3]``. Writes
benchmarks/results/attach_overhead.json and prints it."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from kdiff.attach.client import ProbeClient  # noqa: E402
from kdiff.environments import ensure_env  # noqa: E402

JOB = HERE / "attach_timing_job.py"
SNAPSHOT_EVERY = 100


def start_job(*args: str) -> tuple[subprocess.Popen, str, int]:
    job = subprocess.Popen([str(ensure_env("tensorflow")), str(JOB), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True,
                           env={**os.environ, "PYTHONPATH": str(HERE.parent)})  # this checkout's probe
    _, endpoint, params = job.stdout.readline().split()
    return job, endpoint, int(params)


def overhead(width: int, steps: int, rounds: int) -> dict:
    """Mean step time per phase; during 'snapshots' phases a snapshot is taken every 100 steps."""
    job, endpoint, params = start_job("overhead", "--width", str(width), "--steps", str(steps),
                                      "--rounds", str(rounds))
    client = ProbeClient(endpoint)
    phases: dict[str, list[float]] = {"plain": [], "idle": [], "snapshots": []}
    snapshots = 0
    held = {}
    try:
        while True:
            line = json.loads(job.stdout.readline())
            if "idle_probe_step_s" in line:
                idle_call = line["idle_probe_step_s"]
                break
            if "phase" in line:
                phases[line["phase"]].append(line["step_s"])
            elif line["start"] == "snapshots":
                first = line["first_step"]
                for at_step in range(first + SNAPSHOT_EVERY - 1, first + steps, SNAPSHOT_EVERY):
                    client.request("snapshot", at_step=at_step, **held)
                    header, _ = client.receive({"snapshot"}, time.monotonic() + 120)
                    held = {"model_hash": header["model_hash"]}
                    snapshots += 1
        job.wait(timeout=60)
    finally:
        client.close()
        job.kill()
        job.wait()
    plain = statistics.median(phases["plain"])
    return {"width": width, "parameters": params, "steps_per_phase": steps, "rounds": rounds,
            "snapshots_taken": snapshots,
            "step_s": {name: statistics.median(times) for name, times in phases.items()},
            "idle_probe_step_call_s": idle_call,
            "ratio_idle": statistics.median(phases["idle"]) / plain,
            "ratio_idle_from_call_cost": (plain + idle_call) / plain,
            "ratio_snapshot_every_100": statistics.median(phases["snapshots"]) / plain}


def snapshot_times(width: int, repeats: int) -> dict:
    job, endpoint, params = start_job("serve", "--width", str(width))
    client = ProbeClient(endpoint)
    captured, received, megabytes, held = [], [], 0.0, {}
    try:
        for _ in range(repeats + 1):  # the first builds and compiles the one-pass model: not counted
            started = time.perf_counter()
            client.request("snapshot", **held)
            header, arrays = client.receive({"snapshot"}, time.monotonic() + 300)
            received.append(time.perf_counter() - started)
            captured.append(header["capture_seconds"])
            megabytes = sum(array.nbytes for key, array in arrays.items() if key != "model_file") / 2**20
            held = {"model_hash": header["model_hash"]}
        client.request("snapshot")   # as a coordinator that does not hold the model file yet
        with_file = client.receive({"snapshot"}, time.monotonic() + 300)[0]["capture_seconds"]
    finally:
        client.close()
        job.kill()
        job.wait()
    return {"width": width, "parameters": params, "megabytes": megabytes,
            "first_capture_s": captured[0], "capture_s": statistics.median(captured[1:]),
            "capture_with_model_file_s": with_file,
            "requested_to_received_s": statistics.median(received[1:])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {
        "loop": "Keras 3 (TensorFlow backend, CPU) train_on_batch, MLP 256 -> 3 x width -> 10, batch 64, Adam",
        "machine": f"{os.cpu_count()} cores",
        "overhead": overhead(args.width, args.steps, args.rounds),
        "snapshot_by_size": [snapshot_times(width, args.repeats) for width in args.sizes],
    }
    out = HERE / "results" / "attach_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
