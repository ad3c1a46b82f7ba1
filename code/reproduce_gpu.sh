#!/usr/bin/env bash
# The paper's experiment on one lent GPU, in two commands of one lease (README, "Reproduction").
#
#   bash code/reproduce_gpu.sh pack-data   # here, once: MNIST's IDX files gzipped into
#                                          # data/mnist-gz (git-ignored; carried to the device)
#   bash code/reproduce_gpu.sh probe       # device, <= 3 min: GPU = CPU and graph = eager
#                                          # checks, speed probe (R = 1, 8, 14; fp32/TF32;
#                                          # graph/eager); a table last
#   bash code/reproduce_gpu.sh reproduce   # device, <= 10 min: the default paper grid in strict
#                                          # fp32 for 700 epochs under a time budget, evaluate.py
#                                          # on the GPU (the authors' 160,000 datapoints), pack
#   bash code/reproduce_gpu.sh rehearse    # here, on the CPU: reproduce on a tiny grid, then
#                                          # unpack what came back and check it (KEEP=1 keeps
#                                          # the files; a test runs this)
#
# Results leave the device as one archive, $OUT/paper-results.tar.gz: results/paper with every
# run's metrics.csv and config.json under runs/; checkpoints stay behind. Unpack it with
# `tar xzf paper-results.tar.gz -C results/`.
# Settings (environment): OUT (default results/device-out), BUDGET_MIN (training minutes,
# default 6.5), GRID (auto | full | table1; auto: full if the probe projects that it fits the
# budget, else Table 1's 8 runs and Bare's extra instances are left), DEVICE (default cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/code:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/results/device-out}
BUDGET_MIN=${BUDGET_MIN:-6.5}
GRID=${GRID:-auto}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-results/runs/paper}
RESULTS=${RESULTS:-results/paper}
RAW=data/MNIST/raw
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
mkdir -p "$OUT"

say() { mkdir -p "$OUT"; echo "reproduce_gpu: $*" | tee -a "$OUT/plan.md"; }

pack_data() {  # 55 MB of IDX files -> ~11 MB, under the 64 MiB that travels
    python -c "import al2; al2.load_mnist()"
    mkdir -p data/mnist-gz
    for f in $FILES; do gzip -9 -c "$RAW/$f" > "data/mnist-gz/$f.gz"; done
    du -sh data/mnist-gz
}

unpack_data() {  # the device reaches no package index: MNIST comes gzipped with the tree
    mkdir -p "$RAW"
    for f in $FILES; do
        [ -s "$RAW/$f" ] || gunzip -c "data/mnist-gz/$f.gz" > "$RAW/$f"
    done
    python -c "import al2; al2.load_mnist(download=False)"  # MD5s checked
}

probe() {
    unpack_data
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    timeout 90 python code/check_device.py --device "$DEVICE" --steps 300 | tee "$OUT/check.txt"
    timeout 150 python code/bench_train.py --device "$DEVICE" --runs 1,8,14 --samples 12800 \
        --precisions fp32,tf32 --modes eager,graph --repeats 1 --no-authors \
        --markdown "$OUT/probe.md" --json "$OUT/probe.json" > /dev/null
    cat "$OUT/probe.md"
}

choose_grid() {  # full (14 runs) if a short fp32 graph probe projects it inside the budget
    if [ "$GRID" != auto ]; then echo "$GRID"; return; fi
    local mode=graph
    [ "$DEVICE" = cuda ] || mode=eager  # graphs need CUDA (the CPU rehearsal)
    python code/bench_train.py --device "$DEVICE" --runs 14 --samples "${CHOOSE_SAMPLES:-6400}" \
        --test-images "${CHOOSE_TEST_IMAGES:-10000}" --modes $mode --precisions fp32 --repeats 1 \
        --no-authors --json "$OUT/choose.json" > /dev/null
    python - "$OUT/choose.json" "$BUDGET_MIN" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
print("full" if rows[0]["projected_s"] <= 60 * float(sys.argv[2]) else "table1")
PY
}

reproduce() {  # TRAIN_ARGS / EVAL_ARGS: extra flags (the rehearsal's tiny grid)
    local start=$SECONDS grid extra=()
    mkdir -p "$OUT"
    unpack_data
    grid=$(choose_grid)
    [ "$grid" = table1 ] && extra=(--extra-seeds none)
    say "grid: $grid ($([ "$grid" = table1 ] && echo "Table 1's 8 runs; Bare's extra instances (seeds 1-3) left out: the probe projected the 14-run grid past ${BUDGET_MIN} min" || echo "the default paper grid"))"
    local t_train=$SECONDS
    python code/train.py --device "$DEVICE" --out "$RUNS" --no-progress --checkpoint-epochs 50 \
        --time-budget "$BUDGET_MIN" "${extra[@]}" ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/train.log"
    local trained=$SECONDS
    if grep -q "stopped at epoch" "$OUT/train.log"; then
        say "training stopped early by the time budget: $(grep -o 'stopped at epoch [0-9]* of [0-9]*' "$OUT/train.log")"
    fi
    python code/evaluate.py --runs "$RUNS" --out "$RESULTS" --device "$DEVICE" ${EVAL_ARGS:-} \
        2>&1 | tee "$OUT/evaluate.log" || say "evaluate.py exited $? (see MISSING.md)"
    python code/speed_report.py --runs "$RUNS" --out "$RESULTS/speed.md" \
        --train-seconds $((trained - t_train)) --evaluate-seconds $((SECONDS - trained)) \
        --probe "$OUT/choose.json"
    pack
    say "done in $((SECONDS - start)) s"
}

pack() {  # results/paper plus runs/<run>/{metrics.csv,config.json}: one archive of kilobytes
    local run
    for run in "$RUNS"/*/metrics.csv; do
        run=$(dirname "$run")
        mkdir -p "$RESULTS/runs/$(basename "$run")"
        cp "$run/metrics.csv" "$run/config.json" "$RESULTS/runs/$(basename "$run")/"
    done
    cp "$RUNS/grid.json" "$RESULTS/runs/"
    tar -C "$(dirname "$RESULTS")" -czf "$OUT/paper-results.tar.gz" "$(basename "$RESULTS")"
    cp "$RESULTS/table1.md" "$RESULTS/speed.md" "$OUT/" 2>/dev/null || true
    ls -la "$OUT"
}

rehearse() {  # the reproduce path on this CPU: a tiny grid, then unpack and check the archive
    local tmp
    tmp=$(mktemp -d /tmp/al2-rehearse.XXXXXX)
    DEVICE=cpu RUNS="$tmp/runs" RESULTS="$tmp/paper" OUT="$tmp/out" CHOOSE_SAMPLES=640 \
        CHOOSE_TEST_IMAGES=500 \
        TRAIN_ARGS="--epochs 2 --subset 640 --test-subset 500 --activation-images 100" \
        EVAL_ARGS="--similarity-images 300 --ablation-images 200" reproduce
    mkdir -p "$tmp/unpacked" && tar xzf "$tmp/out/paper-results.tar.gz" -C "$tmp/unpacked"
    python - "$tmp/unpacked" <<'PY'
import sys
from pathlib import Path
root = Path(sys.argv[1])
need = ["table1.csv", "table1.md", "table1.png", "curves.png", "similarity.csv",
        "similarity.png", "ablation.csv", "ablation.png", "speed.md", "runs/grid.json"]
missing = [n for n in need if not (root / "paper" / n).is_file()]
runs = sorted(p.parent.name for p in (root / "paper" / "runs").glob("*/metrics.csv"))
missing += [f"{r}/config.json" for r in runs
            if not (root / "paper" / "runs" / r / "config.json").is_file()]
print(f"rehearsal: {len(runs)} runs came back ({', '.join(runs)}); missing: {missing or 'none'}")
sys.exit(1 if missing or not runs else 0)
PY
    if [ -n "${KEEP:-}" ]; then echo "rehearsal files in $tmp"; else rm -rf "$tmp"; fi
}

case "${1:-}" in
    pack-data) pack_data ;;
    probe) probe ;;
    reproduce) reproduce ;;
    rehearse) rehearse ;;
    *) echo "usage: bash code/reproduce_gpu.sh pack-data|probe|reproduce|rehearse" >&2; exit 2 ;;
esac
