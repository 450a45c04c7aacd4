"""Cold and warm runs of the bundled example (issue 17 item 3): the whole `kdiff MODEL WEIGHTS SAMPLE`
command, wall time from the shell, as a user sees it.

    python -m benchmarks.warm [--repeats 3]

- cold: no --warm; both workers start, import their frameworks, build and compile the model;
- first warm: --warm with no warm worker yet (the same work, and the workers stay behind);
- warm: --warm again: the workers are up and hold the model, which is given back as loaded.
Beside them, the plain frameworks' own cost of one such start in the same environments (import Keras,
build the model from its JSON, load the weights, predict once): what a warm worker saves each run.
The warm workers are in a folder of their own (KDIFF_WARM_DIR) and stopped at the end.
Results: benchmarks/results/warm.json."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = [str(REPO / "examples" / "theano_vgg" / name) for name in ("model.json", "weights.h5", "sample.npy")]
RESULTS = REPO / "benchmarks" / "results" / "warm.json"
PLAIN = """
import time, sys
start = time.perf_counter()
import numpy as np
{imports}
model = model_from_json(open(sys.argv[1]).read())
model.load_weights(sys.argv[2])
model.predict(np.load(sys.argv[3]))
print(time.perf_counter() - start)
"""
IMPORTS = {
    # the shims any Keras 2.3.1 needs on Python 3.11 here (kdiff's worker applies the same)
    "theano": ("import os; sys.path.insert(0, {repo!r})\nfrom backends.original_keras import compat\n"
               "compat.configure_theano({compiledir!r}); compat.prepare_keras(2)\n"
               "from keras.models import model_from_json"),
    "tensorflow": "import os; os.environ['KERAS_BACKEND'] = 'tensorflow'\nfrom keras.models import model_from_json",
}


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kdiff", *args], env=env, cwd=str(REPO), capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 1:  # the example's three flips: a divergence, found and proven
        raise SystemExit(f"kdiff {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def plain(env_name: str) -> float | None:
    """One plain start: import, build, load, predict; in the environment's own Python (None where it cannot)."""
    python = Path(os.environ.get("KDIFF_HOME") or Path.home() / ".cache" / "kdiff") / "envs" / env_name / "bin" / "python"
    if env_name == "tensorflow":
        return None  # Keras 3 cannot read a Keras 2 JSON as it is; kdiff translates it (see the worker's own time)
    home = Path(os.environ.get("KDIFF_HOME") or Path.home() / ".cache" / "kdiff")
    imports = IMPORTS[env_name].format(repo=str(REPO), compiledir=str(home / "theano-compiledir"))
    done = subprocess.run([str(python), "-c", PLAIN.format(imports=imports), *EXAMPLE[:3]],
                          capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="kdiff-warm-bench-")
    env = {**os.environ, "KDIFF_WARM_DIR": folder, "PYTHONPATH": str(REPO)}
    load = os.getloadavg()[0]
    try:
        cold = [timed(EXAMPLE, env) for _ in range(args.repeats)]
        first = timed([*EXAMPLE, "--warm"], env)
        warm = [timed([*EXAMPLE, "--warm"], env) for _ in range(args.repeats)]
    finally:
        subprocess.run([sys.executable, "-m", "kdiff", "serve", "--stop"], env=env, cwd=str(REPO),
                       capture_output=True)
    result = {"cold_s": statistics.median(cold), "cold_runs_s": cold, "first_warm_s": first,
              "warm_s": statistics.median(warm), "warm_runs_s": warm,
              "cold_over_warm": statistics.median(cold) / statistics.median(warm),
              "plain_theano_start_s": plain("theano"), "load_average_before": load, "cpus": os.cpu_count()}
    if result["plain_theano_start_s"]:
        result["cold_over_plain_start"] = result["cold_s"] / result["plain_theano_start_s"]
        result["warm_over_plain_start"] = result["warm_s"] / result["plain_theano_start_s"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"cold {result['cold_s']:.1f} s, first --warm {first:.1f} s, warm {result['warm_s']:.2f} s "
          f"({result['cold_over_warm']:.0f}x); a plain Keras 2.3.1 on Theano start "
          f"(import, build, load, predict): {result['plain_theano_start_s'] or float('nan'):.1f} s "
          f"(cold {result.get('cold_over_plain_start', float('nan')):.2f}x, warm "
          f"{result.get('warm_over_plain_start', float('nan')):.2f}x of it); "
          f"load average before {load:.1f}")


if __name__ == "__main__":
    main()
