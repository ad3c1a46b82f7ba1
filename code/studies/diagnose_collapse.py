"""Why GCE and mixup collapse beside AL2 (results/collapse-quick): per epoch, the gradient that
reaches the trunk's output from the fit loss and from the AL2 term, and how much of the trunk's
output is still alive.

    python code/studies/diagnose_collapse.py                 # -> results/collapse-quick/

Trains one replicate of cross-entropy (the control), GCE and mixup, each without and with AL2,
in the remedies-quick preset's setting: the same runs as replicate 0 of that grid (the same
Trainer, seeds and batches; the probe below changes no weight). Before training and after every
epoch it takes a fixed probe, the first 1,000 training images with their noisy labels, through
every run in eval mode and measures, with a = the trunk's output (1000, 800) per run:

    grad_fit = ||dL_fit/da||,  grad_al2 = ||d(w_e L_r)/da||  (Frobenius; w_e of that epoch)
    active   = the fraction of a's entries > 0,  mean_sq = L_r = mean(a^2)

L_fit is the run's data term (cross-entropy, GCE's, or mixup's on unmixed images, lam = 1).
Writes collapse.csv (one row per run and epoch), collapse.md (when each AL2 run's trunk dies and
the gradient ratio there) and collapse.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2 import plotting
from al2.training.config import GridConfig
from al2.training.presets import PRESETS
from al2.training.data import load_grid_data
from al2.files import save_csv, save_text
from al2.method.loss import activation_loss, al2_term
from al2.paths import RESULTS_DIR, resolve, shown
from al2.training.plan import label_seeds
from al2.training.stack import Trainer

COLUMNS = ["epoch", "run", "fit", "al2", "al2_weight", "grad_fit", "grad_al2", "ratio", "active",
           "mean_sq", "probe_fit", "test_acc"]
DEAD = 0.01          # a trunk is "dead" once fewer than 1% of its outputs on the probe are > 0


def probe(trainer: Trainer, weight: torch.Tensor, n: int) -> dict:
    """Gradient norms at the trunk output and its liveliness, per run, on the first n
    training images (noisy labels), eval mode; no parameter's gradient is touched."""
    model = trainer.model.eval()
    idx = torch.arange(n, device=trainer.device)[None].expand(len(trainer.plan.replicate_keys), -1)
    batch = trainer.batch(idx)
    batch = batch._replace(lam=torch.ones(len(trainer.runs), device=trainer.device))  # unmixed
    log_probs, features = model(batch.x)                       # (R, n, 10), (n, R, 800)
    loss_fit, _ = trainer.data_term(log_probs, batch)
    loss_r = activation_loss(features, dims=(0, 2))
    g_fit, = torch.autograd.grad(loss_fit.sum(), features, retain_graph=True)
    g_al2, = torch.autograd.grad(al2_term(loss_r, weight).sum(), features)

    def norm(g):                                                # (R,)
        return g.pow(2).sum((0, 2)).sqrt()
    model.train()
    return {"grad_fit": norm(g_fit), "grad_al2": norm(g_al2),
            "active": (features > 0).float().mean((0, 2)), "mean_sq": loss_r.detach(),
            "probe_fit": loss_fit.detach()}


def death_rows(rows: list[dict]) -> list[dict]:
    """Per AL2 run: the first epoch its trunk is dead (active < DEAD) and the probe there."""
    out = []
    for run in dict.fromkeys(r["run"] for r in rows if r["al2"]):
        history = [r for r in rows if r["run"] == run]
        dead = next((r for r in history if r["epoch"] > 0 and r["active"] < DEAD), None)
        peak = max(history, key=lambda r: r["test_acc"])
        out.append({"run": run, "fit": history[0]["fit"], "dead": dead, "peak": peak,
                    "last": history[-1]})
    return out


def markdown(rows: list[dict], seconds: float) -> str:
    lines = ["# When the trunk dies beside AL2 (one replicate, remedies-quick setting)", "",
             f"Probe: the first 1,000 training images (noisy labels), eval mode; a trunk is "
             f"dead once fewer than {DEAD:.0%} of its outputs are > 0. Training took "
             f"{seconds / 60:.1f} min.", "",
             "| run | dies at epoch | w_e there | grad_al2 / grad_fit there | active there "
             "| best test acc. (epoch) | at the last epoch: test acc., active |",
             "|---|---|---|---|---|---|---|"]
    for d in death_rows(rows):
        dead, peak, last = d["dead"], d["peak"], d["last"]
        there = (f"{dead['epoch']} | {dead['al2_weight']:.3g} | {dead['ratio']:.3g} | "
                 f"{dead['active']:.4f}") if dead else "never | – | – | –"
        lines.append(f"| {d['run']} | {there} | {peak['test_acc']:.2f} ({peak['epoch']}) | "
                     f"{last['test_acc']:.2f}, {last['active']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "collapse-quick")
    parser.add_argument("--epochs", type=int, default=PRESETS["quick"]["epochs"])
    parser.add_argument("--probe-images", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.epochs < 1 or not 1 <= args.probe_images <= 8000:
        parser.error("need --epochs >= 1 and --probe-images in 1..8000")
    grid = GridConfig(**{**PRESETS["remedies-quick"], "preset": "remedies-quick",
                         "baselines": ["bare", "gce", "mixup"], "replicates": 1,
                         "epochs": args.epochs})
    runs, dev = grid.runs(), torch.device("cpu")
    trainer = Trainer(grid, runs, load_grid_data(grid, dev, label_seeds=label_seeds(runs)))
    rows, start = [], time.perf_counter()
    for epoch in range(grid.epochs + 1):
        if epoch:
            trainer.train(epoch)
        w = trainer.al2_weight(max(epoch, 1))  # the epoch's weight (epoch 0: the first epoch's)
        p = probe(trainer, w, args.probe_images)
        acc = trainer.test()[0]
        for i, r in enumerate(runs):
            g_fit, g_al2 = p["grad_fit"][i].item(), p["grad_al2"][i].item()
            rows.append({"epoch": epoch, "run": r.name, "fit": r.fit, "al2": r.use_al2,
                         "al2_weight": w[i].item(), "grad_fit": g_fit, "grad_al2": g_al2,
                         "ratio": g_al2 / g_fit if g_fit else float("inf"),
                         "active": p["active"][i].item(), "mean_sq": p["mean_sq"][i].item(),
                         "probe_fit": p["probe_fit"][i].item(), "test_acc": acc[i].item()})
        print(f"epoch {epoch}: " + ", ".join(f"{r.name} active {p['active'][i]:.3f}"
                                              for i, r in enumerate(runs) if r.use_al2),
              file=sys.stderr)
    seconds = time.perf_counter() - start
    out = resolve(args.out)
    save_csv(rows, out / "collapse.csv", COLUMNS)
    save_text(markdown(rows, seconds), out / "collapse.md")
    collapse_png(rows, out / "collapse.png")
    print(f"wrote collapse.csv, collapse.md, collapse.png to {shown(out)} "
          f"({seconds / 60:.1f} min)")
    return 0



FIT_BASELINE = {"ce": "bare", "gce": "gce", "mixup": "mixup", "ls": "ls", "sce": "sce"}


def collapse_png(rows: list[dict], path: Path) -> None:
    """collapse.png: per AL2 run, the gradient norms reaching the trunk's output
    from the fit loss (solid) and the AL2 term (dashed), and the fraction of live outputs."""
    fig, (top, bottom) = plotting.plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for fit in dict.fromkeys(r["fit"] for r in rows):
        mine = [r for r in rows if r["fit"] == fit and r["al2"]]
        gray, marker = plotting.BASELINE_STYLE[FIT_BASELINE[fit]]
        epochs = [r["epoch"] for r in mine]
        for key, style in (("grad_fit", "-"), ("grad_al2", "--")):
            top.semilogy(epochs, [max(r[key], 1e-12) for r in mine], style, color=gray,
                         marker=marker, markersize=3,
                         label=f"{fit} + AL2: {'fit loss' if key == 'grad_fit' else 'AL2 term'}")
        bottom.plot(epochs, [100 * r["active"] for r in mine], "-", color=gray, marker=marker,
                    markersize=3, label=f"{fit} + AL2")
    top.set_ylabel("gradient norm at the trunk output")
    top.legend(fontsize=7, ncol=2)
    bottom.set_ylabel("trunk outputs > 0 (%)")
    bottom.set_xlabel("epoch")
    bottom.legend(fontsize=8)
    top.set_title("Gradients reaching the trunk, and the trunk's live outputs (probe: 1,000 "
                  "training images)", fontsize=9)
    plotting.save_figure(fig, path)

if __name__ == "__main__":
    sys.exit(main())
