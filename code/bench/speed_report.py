"""speed.md for a trained grid: where and how it ran, and how fast.

    python code/bench/speed_report.py --runs results/runs/paper --out results/paper/speed.md \
        --train-seconds 412 --train-calls 1 --evaluate-seconds 25 --probe probe.json
"""
from __future__ import annotations

import argparse
import math
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.errors import UserError
from al2.files import FileError, read_json, save_text
from al2.paths import resolve
from al2.analyses.runs import discover_runs


def report(runs_dir: Path, train_s: float, evaluate_s: float, probe: dict | None,
           train_calls: int = 1) -> str:
    runs = discover_runs(runs_dir)
    config, grid = runs[0].saved_config, runs[0].grid
    env = config["environment"]
    trained = min(r.epochs for r in runs)
    steps = math.ceil(config["train_images"] / grid.batch_size)
    wall = runs[0].metrics[-1]["wall_time_s"]   # the trainer's clock: epochs 0..trained
    precision = "TF32" if env.get("tf32_matmul") or env.get("tf32_cudnn") else "strict fp32"
    lines = [f"# Speed of this grid ({date.today()})", "",
             "| | |", "|---|---|",
             f"| device | {env.get('gpu', env['device'])} |",
             f"| torch | {env['torch']} (Python {env['python']}) |",
             f"| precision | {precision} (matmul TF32 {env.get('tf32_matmul')}, cuDNN TF32 "
             f"{env.get('tf32_cudnn')}) |",
             f"| training step | {training_steps(config)} |",
             f"| runs stacked (R) | {len(runs)} |",
             f"| epochs trained / planned | {trained} / {grid.epochs} |",
             f"| steps per epoch | {steps} (batch {grid.batch_size}, "
             f"{config['train_images']} images) |",
             f"| training wall time (trainer's clock, incl. per-epoch test metrics and "
             f"checkpoints) | {wall:.0f} s ({wall / 60:.1f} min) |",
             f"| steps/s (all R runs per step) | {trained * steps / wall:.0f} |",
             f"| train.py {'call' if train_calls == 1 else f'{train_calls} calls'}, start to "
             f"end{'' if train_calls == 1 else ', summed'} | {train_s:.0f} s |",
             f"| evaluate.py call | {evaluate_s:.0f} s |"]
    if probe:
        lines += ["", "## The step's variants, probed before training "
                      "(code/bench/probe_step.py)", "", probe["table"].strip()]
    return "\n".join(lines) + "\n"


def step_name(env: dict) -> str:
    kind = "CUDA graph replay" if env.get("cuda_graph") else "eager"
    extra = ", cudnn.benchmark" if env.get("cudnn_benchmark") else ""
    extra += ", flat SGD" if env.get("optimizer") == "flat" else ""
    return f"{kind}, trunk {env.get('trunk', 'grouped')}{extra}"


def training_steps(config: dict) -> str:
    """The step of each train.py call: one name, or after resumes with another step 'eager,
    trunk grouped (first call), CUDA graph replay, trunk streams (resume 1, from epoch 92)'."""
    calls = [(0, config["environment"])] + [(r.get("after_epoch"), r["environment"])
                                            for r in config.get("resumes", [])]
    if len({step_name(env) for _, env in calls}) == 1:
        return step_name(calls[0][1])
    parts = []
    for i, (after, env) in enumerate(calls):
        where = "first call" if i == 0 else (f"resume {i}, from epoch {after + 1}"
                                              if after is not None else f"resume {i}")
        parts.append(f"{step_name(env)} ({where})")
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="the grid's run folder")
    parser.add_argument("--out", type=Path, required=True, help="speed.md to write")
    parser.add_argument("--train-seconds", type=float, required=True)
    parser.add_argument("--train-calls", type=int, default=1,
                        help="train.py calls the training took (resumed between them)")
    parser.add_argument("--evaluate-seconds", type=float, required=True)
    parser.add_argument("--probe", type=Path, default=None,
                        help="code/bench/probe_step.py --json output of the probe before training")
    args = parser.parse_args()
    try:
        probe = read_json(resolve(args.probe), "probe file", "run code/bench/probe_step.py --json "
                          "again") if args.probe and resolve(args.probe).exists() else None
        text = report(resolve(args.runs), args.train_seconds, args.evaluate_seconds, probe,
                      args.train_calls)
    except (UserError, FileError, KeyError) as e:
        parser.exit(2, f"speed_report.py: error: {e}\n")
    save_text(text, resolve(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
