"""speed.md for a trained grid: where and how it ran, and how fast (code/reproduce_gpu.sh).

    python code/speed_report.py --runs results/runs/paper --out results/paper/speed.md \
        --train-seconds 412 --train-calls 2 --evaluate-seconds 55 --probe probe.json \
        --check check.txt
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path

from al2.checkpoints import atomic_write
from al2.runs import RunsError, discover_runs


def report(runs_dir: Path, train_s: float, evaluate_s: float, probe: dict | None,
           train_calls: int = 1, check: str | None = None, profile: str | None = None) -> str:
    runs = discover_runs(runs_dir)
    config, grid = runs[0].config, runs[0].grid
    env = config["environment"]
    trained = min(r.epochs for r in runs)
    steps = math.ceil(config["train_images"] / grid["batch_size"])
    wall = runs[0].metrics[-1]["wall_time_s"]   # the trainer's clock: epochs 0..trained
    precision = "TF32" if env.get("tf32_matmul") or env.get("tf32_cudnn") else "strict fp32"
    lines = [f"# Speed of this grid ({date.today()})", "",
             "| | |", "|---|---|",
             f"| device | {env.get('gpu', env['device'])} |",
             f"| torch | {env['torch']} (Python {env['python']}) |",
             f"| precision | {precision} (matmul TF32 {env.get('tf32_matmul')}, cuDNN TF32 "
             f"{env.get('tf32_cudnn')}) |",
             f"| training step | {training_steps(config)} |",
             f"| convolutions (--conv2, --conv1) | {env.get('conv2', 'grouped')}, "
             f"{env.get('conv1', 'cudnn')} |",
             f"| runs stacked (R) | {len(runs)} |",
             f"| epochs trained / planned | {trained} / {grid['epochs']} |",
             f"| steps per epoch | {steps} (batch {grid['batch_size']}, "
             f"{config['train_images']} images) |",
             f"| training wall time (trainer's clock, incl. per-epoch test metrics and "
             f"checkpoints) | {wall:.0f} s |",
             f"| steps/s (all R runs per step) | {trained * steps / wall:.0f} |",
             f"| train.py {'call' if train_calls == 1 else f'{train_calls} calls'}, start to "
             f"end{'' if train_calls == 1 else ', summed'} | {train_s:.0f} s |",
             f"| evaluate.py call | {evaluate_s:.0f} s |"]
    if probe:
        lines += probe_table(probe)
    if check:
        lines += ["", "Device check before training (code/check_device.py):", "", "```",
                  check.strip(), "```"]
    if profile:
        lines += ["", "Profile of the eager step (code/profile_step.py):", "", profile.strip()]
    return "\n".join(lines) + "\n"


def step_name(env: dict) -> str:
    return "CUDA graph replay" if env.get("cuda_graph") else "eager"


def training_steps(config: dict) -> str:
    """The step of each train.py call: 'eager' or, after resumes, 'eager (epochs 1-91), CUDA
    graph replay (from epoch 92)'."""
    calls = [(0, config["environment"])] + [(r.get("after_epoch"), r["environment"])
                                            for r in config.get("resumes", [])]
    if len({step_name(env) for _, env in calls}) == 1:
        return step_name(calls[0][1])
    parts = []
    for i, (after, env) in enumerate(calls):
        where = "first call" if i == 0 else (f"resume {i}, from epoch {after + 1}"
                                              if after is not None else f"resume {i}")
        parts.append(f"{step_name(env)} ({where})")
    return ", ".join(parts)


def probe_table(probe: dict) -> list[str]:
    """code/bench_train.py's rows: the speed probe before training, and graph vs eager."""
    lines = ["", f"Speed probe before training (code/bench_train.py, {probe['device']}, torch "
                 f"{probe['torch']}; projected: 700 epochs of 938 steps plus one test "
                 f"evaluation per epoch):", "",
             "| runs | precision, step | conv2, conv1 | steps/s | test evaluation s | "
             "projected 700 epochs |", "|---|---|---|---|---|---|"]
    rate = {}
    for row in probe["rows"]:
        kernels = f"{row.get('conv2', 'grouped')}, {row.get('conv1', 'cudnn')}"
        rate[row["runs"], row["config"], kernels] = row["steps_per_s"]
        lines.append(f"| {row['runs']} | {row['config']} | {kernels} | {row['steps_per_s']:.0f} | "
                     f"{row['eval_s']:.3f} | {row['projected_s'] / 60:.1f} min |")
    ratios = [f"{r} runs {p}: {rate[r, f'{p} graph', c] / rate[r, f'{p} eager', c]:.2f}x"
              for r, cfg, c in rate if cfg.endswith("eager") and c == "grouped, cudnn"
              for p in [cfg.split()[0]] if (r, f"{p} graph", c) in rate]
    if ratios:
        lines += ["", "Graph replay vs eager step (steps/s, grouped, cudnn): " + "; ".join(ratios)
                  + "."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="the grid's run folder")
    parser.add_argument("--out", type=Path, required=True, help="speed.md to write")
    parser.add_argument("--train-seconds", type=float, required=True)
    parser.add_argument("--train-calls", type=int, default=1,
                        help="train.py calls the training took (resumed between them)")
    parser.add_argument("--evaluate-seconds", type=float, required=True)
    parser.add_argument("--check", type=Path, default=None,
                        help="code/check_device.py's output before training")
    parser.add_argument("--profile", type=Path, default=None,
                        help="code/profile_step.py's output before training")
    parser.add_argument("--probe", type=Path, default=None,
                        help="bench_train.py --json output of the probe before training")
    args = parser.parse_args()
    try:
        probe = json.loads(args.probe.read_text()) if args.probe and args.probe.exists() else None
        check, profile = (f.read_text() if f and f.exists() else None
                          for f in (args.check, args.profile))
        text = report(args.runs, args.train_seconds, args.evaluate_seconds, probe,
                      args.train_calls, check, profile)
    except (RunsError, KeyError, ValueError) as e:
        parser.exit(2, f"speed_report.py: error: {e}\n")
    atomic_write(args.out, lambda f: f.write(text.encode()))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
