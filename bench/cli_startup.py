"""Wall time of `sr --help` (median of N runs), beside a bare interpreter and `import torch` for scale.

Each run is a fresh interpreter (`python -m sr_cli --help`), as a user's shell would start it. The load
average and core count are printed with the figures: on a shared machine the same command can take
several times longer, so quote a figure together with the load it was measured under (docs/benchmarks.md).

Run: python3 bench/cli_startup.py [--runs 15]     (from the repository root, or with sr_cli installed)
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "sr --help": [sys.executable, "-m", "sr_cli", "--help"],
    "sr upscale --help": [sys.executable, "-m", "sr_cli", "upscale", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall_times(command: list[str], runs: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm the file cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (after one warm-up)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"python {sys.version.split()[0]}, {args.runs} runs each")
    print("| command | median s | min s | max s |\n|---|---|---|---|")
    for label, command in COMMANDS.items():
        times = wall_times(command, args.runs)
        print(f"| `{label}` | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    load_after = os.getloadavg()
    print(f"load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
