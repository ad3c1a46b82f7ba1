"""AL2 on a network of your own: torchvision's ResNet-18 on label-corrupted MNIST, trained without
and with the progressive activation loss, then compared as the paper compares its networks.

The ResNet-18 is torchvision's, adapted to 28 x 28 grey images: its first convolution takes 1
channel (torchvision's 7 x 7, stride 2, padding 3), 10 classes; the rest is unchanged, so the
maps are 14 pixels wide after that convolution, 7 after the max-pool, and 7, 4, 2 and 1 in the
four stages, and the trunk ends at "avgpool" (512 features), whose output the head (fc)
reads. AL2 is the three lines marked in train(): the hook, the penalty, the step.

Both runs start from the same initialisation and see the same batches. CPU-sized by default (a
subset and a few epochs); --device cuda and larger --subset / --epochs for more.

    python code/resnet_example.py                      # ~5 min on 2 CPU cores
    python code/resnet_example.py --device cuda --subset 60000 --epochs 60
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's svcca, not an
# installed checkout's (its al2: code/, this script's folder, comes first already)

import al2
from al2.analyses.ablation import ablation_fractions, cumulative_ablation
from al2.method.schedule import MAP_START
from al2.training.data import NUM_CLASSES
from al2.training.presets import QUICK_RAMP
from al2.training.device import select_device
from al2.errors import UserError
from al2.files import save_text
from al2.paths import RESULTS_DIR, resolve, shown
from al2.analyses.similarity import AUTHORS_STATISTICS, compare_models


def resnet18_mnist(seed: int) -> nn.Module:
    """torchvision's ResNet-18 for 1 x 28 x 28 inputs and 10 classes (module docstring)."""
    import torchvision
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def load(args, device):
    """Training subset with corrupted labels, test subset, normalised, on the device."""
    train_x, train_y, test_x, test_y = al2.load_mnist()
    noisy, _ = al2.corrupt_labels(train_y, args.percent_corrupt, args.seed)
    n, m = args.subset, args.test_subset
    return {"x": al2.normalize(train_x[:n]).to(device), "noisy": noisy[:n].to(device),
            "clean": train_y[:n].to(device), "test_x": al2.normalize(test_x[:m]).to(device),
            "test_y": test_y[:m].to(device)}


@torch.no_grad()
def accuracy(model, x, y, batch: int = 500) -> float:
    model.eval()
    correct = sum((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum().item()
                  for s in range(0, len(x), batch))
    model.train()
    return 100.0 * correct / len(x)


def train(args, data, use_al2: bool, device) -> tuple[nn.Module, list[dict]]:
    """One run: SGD with momentum on the noisy labels, without or with AL2 on "avgpool"."""
    model = resnet18_mnist(args.seed).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    schedule = al2.AL2Schedule(args.map_start, args.map_threshold, args.map_fac1, args.map_fac2)
    reg = al2.AL2(model, trunk="avgpool", schedule=schedule) if use_al2 else None   # AL2 (1/3)
    order = torch.Generator(device=device).manual_seed(args.seed)
    history = []
    for epoch in range(1, args.epochs + 1):
        start, seen, loss_c_sum = time.perf_counter(), 0, 0.0
        for idx in torch.randperm(len(data["x"]), device=device, generator=order).split(
                args.batch_size):
            loss_c = F.cross_entropy(model(data["x"][idx]), data["noisy"][idx])
            loss = loss_c + reg.penalty() if reg else loss_c                  # AL2 (2/3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_c_sum, seen = loss_c_sum + loss_c.item() * len(idx), seen + len(idx)
        row = {"epoch": epoch, "train_Lc": loss_c_sum / seen,
               "al2_weight": reg.weight if reg else 0.0,
               "train_Lr": reg.last_loss_r.item() if reg else float("nan"),
               "test_acc": accuracy(model, data["test_x"], data["test_y"]),
               "seconds": time.perf_counter() - start}
        if reg:
            reg.step()                                                          # AL2 (3/3)
        history.append(row)
        print(f"{'al2  ' if use_al2 else 'plain'} epoch {epoch:3d}: L_c {row['train_Lc']:.3f} "
              f"L_r {row['train_Lr']:.3g} "
              f"test {row['test_acc']:.2f}%  w {row['al2_weight']:.3g}  "
              f"({row['seconds']:.0f} s)", file=sys.stderr)
    if reg:
        reg.remove()
    return model.eval(), history


def ablation_table(models: dict, data, args) -> list[str]:
    """Unit ablation of the 512 avgpool features (Sec. 5.2): test accuracy as whole channels
    are zeroed, each model's head (fc) on its own features."""
    lines = ["| channels zeroed | " + " | ".join(models) + " |",
             "|---|" + "---|" * len(models)]
    curves = {}
    for name, model in models.items():
        feats = al2.trunk_outputs(model, "avgpool", data["test_x"])         # (n, 512, 1, 1)
        curves[name] = cumulative_ablation(lambda f, m=model: m.fc(f.flatten(1)), feats,
                                           {"test": data["test_y"]}, mode="unit", draws=3,
                                           seed=args.seed)["test"]
    for i, frac in enumerate(ablation_fractions()):
        lines.append(f"| {100 * frac:.0f}% | " + " | ".join(f"{curves[n][i]:.2f}"
                                                            for n in models) + " |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--subset", type=int, default=3000, help="first N training images")
    p.add_argument("--test-subset", type=int, default=2000, help="first N test images")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--percent-corrupt", type=float, default=75.0, help="label noise (%%)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    # the AL2 schedule compressed for a few epochs: the quick preset's (presets.QUICK_RAMP)
    p.add_argument("--map-start", type=float, default=MAP_START, help="AL2 weight at epoch 0")
    p.add_argument("--map-threshold", type=float, default=QUICK_RAMP["map_threshold"])
    p.add_argument("--map-fac1", type=float, default=QUICK_RAMP["map_fac1"],
                   help="growth below the threshold")
    p.add_argument("--map-fac2", type=float, default=QUICK_RAMP["map_fac2"],
                   help="growth from the threshold on")
    p.add_argument("--seed", type=int, default=0, help="initialisation, batch order, noise")
    p.add_argument("--out", default=str(RESULTS_DIR / "resnet-example"),
                   help="where summary.md goes")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = sys.argv[1:] if argv is None else list(argv)
    if not (1 <= args.subset <= 60000 and 1 <= args.test_subset <= 10000 and args.epochs >= 1):
        parser.error("--subset in 1..60000, --test-subset in 1..10000, --epochs >= 1")
    try:
        device = select_device(args.device)
        data = load(args, device)
    except UserError as e:
        parser.exit(2, f"resnet_example.py: error: {e}\n")
    start = time.perf_counter()
    models, histories = {}, {}
    for name, use_al2 in (("without AL2", False), ("with AL2", True)):
        models[name], histories[name] = train(args, data, use_al2, device)
    similarity = compare_models(models["without AL2"], models["with AL2"], "avgpool",
                                data["test_x"])
    lines = [f"# ResNet-18 on MNIST with {args.percent_corrupt:g}% label noise, without and "
             f"with AL2", "", f"`{' '.join(['python code/resnet_example.py', *command])}` on "
             f"{device}, {time.perf_counter() - start:.0f} s.", "",
             "| | without AL2 | with AL2 |", "|---|---|---|"]
    for label, key in (("final test accuracy (%)", "test_acc"), ("final train L_c", "train_Lc")):
        lines.append(f"| {label} | " + " | ".join(f"{histories[n][-1][key]:.2f}"
                                                 for n in models) + " |")
    lines.append("| mean test accuracy of the last 5 epochs (%) | " + " | ".join(
        f"{sum(r['test_acc'] for r in histories[n][-5:]) / len(histories[n][-5:]):.2f}"
        for n in models) + " |")
    lines.append("| best test accuracy (%), epoch | " + " | ".join(
        "{:.2f}, {}".format(*max((r["test_acc"], r["epoch"]) for r in histories[n]))
        for n in models) + " |")
    lines += ["", "Similarity of the two trunks (avgpool, test images), as the authors computed "
                  "it: " + ", ".join(f"{k} {similarity[k]:.3f}" for k in AUTHORS_STATISTICS) +
              f"; linear CKA {similarity['cka']:.3f}.", "",
              "Unit ablation (test accuracy, %):", "", *ablation_table(models, data, args)]
    text = "\n".join(lines) + "\n"
    print(text)
    out = resolve(args.out)
    save_text(text, out / "summary.md")
    print(f"wrote {shown(out / 'summary.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
