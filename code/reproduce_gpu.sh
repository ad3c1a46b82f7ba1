#!/usr/bin/env bash
# The paper's experiment on one lent GPU, in two commands of one lease (README, "Reproduction").
#
#   bash code/reproduce_gpu.sh pack-data   # here, once: MNIST's IDX files gzipped into
#                                          # data/mnist-gz (git-ignored; carried to the device)
#   bash code/reproduce_gpu.sh probe       # device, <= 3 min: GPU = CPU and graph = eager
#                                          # checks, speed probe (R = 1, 8, 14, 24; fp32/TF32;
#                                          # graph/eager); a table last
#   bash code/reproduce_gpu.sh reproduce   # device: the default paper grid in strict fp32 for
#                                          # 700 epochs under a time budget, then evaluate.py
#                                          # on the GPU (the authors' 160,000 datapoints), pack
#   bash code/reproduce_gpu.sh rehearse    # here, on the CPU: both device commands on a tiny
#                                          # grid, then unpack what came back and check it
#                                          # (KEEP=1 keeps the files; a test runs this)
#
# The lease (15 device minutes, the machine's start included; one command <= 10 min) holds about
# 9 minutes of training. So the grid trains over the lease's two commands, which run on the same
# warm machine (the run folder, git-ignored, stays there between them):
#   1. export T0=$(date +%s); bash code/reproduce_gpu.sh probe; CALL_S=400 bash code/reproduce_gpu.sh reproduce
#   2. export T0=$(date +%s); CALL_S=<what the lease has left> FINAL=1 bash code/reproduce_gpu.sh reproduce
# Each reproduce trains (resuming what is there) until CALL_S seconds after T0 less what it keeps
# for the rest: EVAL_S for evaluate.py and packing when FINAL=1 or when the grid completes in
# time, PACK_S otherwise. A grid that completes is evaluated; FINAL=1 evaluates whatever is
# there (a grid stopped early is reported as such). Every call packs what it has, so a lease
# that ends early still brings the per-run metrics home.
#
# Results leave the device as one archive, $OUT/paper-results.tar.gz: results/paper with every
# run's metrics.csv and config.json under runs/ (checkpoints stay behind), the probe's files
# under device/. Unpack it with `tar xzf paper-results.tar.gz -C results/`.
# Settings (environment): OUT (default results/device-out), T0 (epoch seconds the command's
# clock starts at; default: now), CALL_S (seconds the command may take, default 570), EVAL_S
# (default 100), PACK_S (default 20), FINAL (1: evaluate at the end whatever is trained),
# TRAIN_MIN (a fixed training budget, minutes, instead of the clock's), GRID (auto | full |
# table1; auto: full if the probe projects it inside TOTAL_TRAIN_S, default 540, else Table 1's
# 8 runs and Bare's extra instances are left), DEVICE (default cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/code:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/results/device-out}
T0=${T0:-$(date +%s)}
CALL_S=${CALL_S:-570}
EVAL_S=${EVAL_S:-100}
PACK_S=${PACK_S:-20}
FINAL=${FINAL:-0}
TOTAL_TRAIN_S=${TOTAL_TRAIN_S:-540}
GRID=${GRID:-auto}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-results/runs/paper}
RESULTS=${RESULTS:-results/paper}
STATE=${STATE:-$RUNS.device}  # the probe's files and the lease's bookkeeping, beside the runs
RAW=data/MNIST/raw
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
mkdir -p "$OUT" "$STATE"

say() { echo "reproduce_gpu: $*" | tee -a "$STATE/plan.md"; }
left() { echo $((CALL_S - ($(date +%s) - T0))); }  # seconds this command has left
until_end() { local s=$(( $(left) - $1 )); echo $(( s > 1 ? s : 1 )); }  # left less $1, >= 1

pack_data() {  # 55 MB of IDX files -> ~11 MB, under the 64 MiB that travels
    python3 -c "import al2; al2.load_mnist()"
    mkdir -p data/mnist-gz
    for f in $FILES; do gzip -9 -c "$RAW/$f" > "data/mnist-gz/$f.gz"; done
    du -sh data/mnist-gz
}

unpack_data() {  # the device reaches no package index: MNIST comes gzipped with the tree
    mkdir -p "$RAW"
    for f in $FILES; do
        [ -s "$RAW/$f" ] || gunzip -c "data/mnist-gz/$f.gz" > "$RAW/$f"
    done
    python3 -c "import al2; al2.load_mnist(download=False)"  # MD5s checked
}

probe() {  # each step may fail without ending the lease: training falls back (eager, GRID)
    unpack_data
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        > "$STATE/gpu.txt" || echo "$DEVICE" > "$STATE/gpu.txt"
    cat "$STATE/gpu.txt"
    timeout 120 python3 code/check_device.py --device "$DEVICE" --steps "${CHECK_STEPS:-300}" \
        --weight-steps "${CHECK_WEIGHT_STEPS:-20}" \
        2>&1 | tee "$STATE/check.txt" || say "device check: a difference past its tolerance or an error (check.txt)"
    if [ "$DEVICE" = cuda ] && ! grep -q "^graph step: ok" "$STATE/check.txt"; then
        say "the CUDA-graph step failed its check: training runs the eager step (--no-cuda-graph)"
        touch "$STATE/no-graph"
    fi
    timeout 150 python3 code/bench_train.py --device "$DEVICE" --runs "${PROBE_RUNS:-1,8,14,24}" \
        --samples "${PROBE_SAMPLES:-12800}" --test-images "${PROBE_TEST_IMAGES:-10000}" \
        --precisions fp32,tf32 --modes eager,graph --repeats 1 --no-authors \
        --markdown "$STATE/probe.md" --json "$STATE/probe.json" > /dev/null \
        || say "speed probe failed: the grid is chosen without it"
    cat "$STATE/probe.md" 2>/dev/null || true
}

choose_grid() {  # full (14 runs) if the probe projects it inside TOTAL_TRAIN_S, else Table 1
    if [ "$GRID" != auto ]; then echo "$GRID"; return; fi
    [ -f "$STATE/probe.json" ] || { echo full; return; }
    python3 - "$STATE/probe.json" "$TOTAL_TRAIN_S" "$([ -f "$STATE/no-graph" ] && echo eager || echo graph)" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
mode = "graph" if any(r["config"] == "fp32 graph" for r in rows) and sys.argv[3] == "graph" else "eager"
full = [r for r in rows if r["config"] == f"fp32 {mode}" and r["runs"] == 14]
# 10% for what the probe leaves out: metrics.csv, checkpoints, the epoch's host sync
print("full" if not full or 1.1 * full[0]["projected_s"] <= float(sys.argv[2]) else "table1")
PY
}

train() {  # one budgeted train.py call into $RUNS, resuming what is there
    local grid budget keep=$PACK_S start=$SECONDS args=()
    [ "$FINAL" = 1 ] && keep=$EVAL_S
    if [ -f "$STATE/grid" ]; then
        grid=$(cat "$STATE/grid")
    else
        grid=$(choose_grid)
        echo "$grid" > "$STATE/grid"
        say "grid: $grid ($([ "$grid" = table1 ] && echo "Table 1's 8 runs; Bare's extra instances (seeds 1-3) left out: the probe projected the 14-run grid past ${TOTAL_TRAIN_S} s" || echo "the default paper grid, 14 runs"))"
    fi
    [ "$grid" = table1 ] && args+=(--extra-seeds none)
    [ -f "$STATE/no-graph" ] && args+=(--no-cuda-graph)
    [ -f "$RUNS/grid.json" ] && args+=(--resume)
    budget=$(python3 -c "print(round(${TRAIN_MIN:-($(left) - $keep - 15) / 60}, 4))")
    if [ -z "${TRAIN_MIN:-}" ] && python3 -c "import sys; sys.exit(float('$budget') >= 0.25)"; then
        say "no time left to train in this call (budget ${budget} min)"; return
    fi
    say "training for at most $budget min (${args[*]:-fresh})"
    timeout "$(until_end 5)" python3 code/train.py --device "$DEVICE" --out "$RUNS" --no-progress \
        --checkpoint-epochs 50 --time-budget "$budget" "${args[@]}" ${TRAIN_ARGS:-} 2>&1 \
        | tee -a "$STATE/train.log" || say "train.py exited with an error (train.log)"
    echo $((SECONDS - start)) >> "$STATE/train-seconds"
}

evaluate() {
    local start=$SECONDS
    timeout "$(until_end "$PACK_S")" python3 code/evaluate.py --runs "$RUNS" --out "$RESULTS" \
        --device "$DEVICE" ${EVAL_ARGS:-} 2>&1 | tee "$STATE/evaluate.log" \
        || say "evaluate.py exited with an error or MISSING.md (evaluate.log)"
    python3 code/speed_report.py --runs "$RUNS" --out "$RESULTS/speed.md" \
        --train-seconds "$(awk '{s += $1} END {print s + 0}' "$STATE/train-seconds" 2>/dev/null)" \
        --train-calls "$(cat "$STATE/train-seconds" 2>/dev/null | wc -l)" \
        --evaluate-seconds $((SECONDS - start)) --probe "$STATE/probe.json" \
        --check "$STATE/check.txt" || say "speed_report.py failed"
}

reproduce() {
    unpack_data
    [ -f "$RUNS/shards/whole.json" ] || train
    if [ -f "$RUNS/shards/whole.json" ] || [ "$FINAL" = 1 ]; then
        if [ "$FINAL" = 1 ] || [ "$(left)" -ge "$EVAL_S" ]; then
            evaluate
        else
            say "the grid is trained; evaluation is left for the next call (FINAL=1)"
        fi
    else
        say "the grid is not trained yet: call reproduce again (FINAL=1 in the lease's last call)"
    fi
    pack
    say "this call: $(( $(date +%s) - T0 )) s"
}

pack() {  # results/paper plus runs/<run>/{metrics.csv,config.json}, device/: one small archive
    local run
    mkdir -p "$RESULTS/runs" "$RESULTS/device"
    for run in "$RUNS"/*/metrics.csv; do
        [ -f "$run" ] || continue
        run=$(dirname "$run")
        mkdir -p "$RESULTS/runs/$(basename "$run")"
        cp "$run/metrics.csv" "$run/config.json" "$RESULTS/runs/$(basename "$run")/"
    done
    [ -f "$RUNS/grid.json" ] && cp "$RUNS/grid.json" "$RESULTS/runs/"
    cp "$STATE"/*.txt "$STATE"/*.md "$STATE"/*.json "$STATE"/*.log "$RESULTS/device/" 2>/dev/null || true
    tar -C "$(dirname "$RESULTS")" -czf "$OUT/paper-results.tar.gz" "$(basename "$RESULTS")"
    cp "$RESULTS/table1.md" "$RESULTS/speed.md" "$OUT/" 2>/dev/null || true
    ls -la "$OUT"
}

rehearse() {  # the lease's two commands on this CPU: a tiny grid, then unpack and check
    local tmp
    tmp=$(mktemp -d /tmp/al2-rehearse.XXXXXX)
    export DEVICE=cpu RUNS="$tmp/runs" RESULTS="$tmp/paper" STATE="$tmp/runs.device" \
        PROBE_RUNS=1,8 PROBE_SAMPLES=640 PROBE_TEST_IMAGES=500 CHECK_STEPS=3 CHECK_WEIGHT_STEPS=2 TOTAL_TRAIN_S=100000 \
        TRAIN_ARGS="--epochs 2 --subset 640 --test-subset 500 --activation-images 100" \
        EVAL_ARGS="--similarity-images 300 --ablation-images 200"
    mkdir -p "$STATE"
    # command 1: probe, then training stopped by its budget after the first epoch
    OUT="$tmp/out1" bash "$0" probe > "$tmp/probe.log" 2>&1 || { cat "$tmp/probe.log"; return 1; }
    OUT="$tmp/out1" TRAIN_MIN=0.0001 GRID=table1 bash "$0" reproduce
    # command 2: resume, finish, evaluate, pack
    OUT="$tmp/out2" FINAL=1 bash "$0" reproduce
    mkdir -p "$tmp/unpacked1" "$tmp/unpacked2"
    tar xzf "$tmp/out1/paper-results.tar.gz" -C "$tmp/unpacked1"
    tar xzf "$tmp/out2/paper-results.tar.gz" -C "$tmp/unpacked2"
    python3 - "$tmp/unpacked1" "$tmp/unpacked2" <<'PY'
import csv, sys
from pathlib import Path
first, root = (Path(p) / "paper" for p in sys.argv[1:])
# after command 1: metrics of every run at the stop, no evaluation yet
epochs1 = {p.parent.name: len(list(csv.DictReader(open(p)))) - 1
           for p in (first / "runs").glob("*/metrics.csv")}
assert epochs1 and set(epochs1.values()) == {1}, f"command 1 should stop at epoch 1: {epochs1}"
assert not (first / "table1.csv").exists(), "command 1 evaluated an unfinished grid"
need = ["table1.csv", "table1.md", "table1.png", "curves.png", "similarity.csv",
        "similarity.png", "ablation.csv", "ablation.png", "speed.md", "runs/grid.json",
        "device/probe.md", "device/check.txt"]
missing = [n for n in need if not (root / n).is_file()]
runs = sorted(p.parent.name for p in (root / "runs").glob("*/metrics.csv"))
missing += [f"{r}/config.json" for r in runs if not (root / "runs" / r / "config.json").is_file()]
epochs = {len(list(csv.DictReader(open(root / "runs" / r / "metrics.csv")))) - 1 for r in runs}
speed = (root / "speed.md").read_text()
assert epochs == {2}, f"command 2 should finish epoch 2: {epochs}"
assert "2 calls" in speed and "| 8 | fp32 eager |" in speed, speed
check = (root / "device" / "check.txt").read_text()
assert "Traceback" not in check and "cpu vs cpu eager" in check, check
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
