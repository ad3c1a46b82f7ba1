#!/usr/bin/env bash
# The paper's experiment on lent GPUs: trained over as many leases as it takes, evaluated here.
#
#   bash code/reproduce_gpu.sh pack-data   # here, once: MNIST's IDX files xz-compressed into
#                                          # data/mnist-xz (9 MB, git-ignored; carried along)
#   bash code/reproduce_gpu.sh probe       # device, first lease, <= 3 min: GPU = CPU and
#                                          # graph = eager checks, speed probe (R = 1, 8, 14,
#                                          # 24; fp32/TF32; graph/eager); a table last
#   bash code/reproduce_gpu.sh reproduce   # device: train the default paper grid in strict
#                                          # fp32 (resuming the carried state), then send home
#                                          # the state, the new checkpoints and the metrics
#   bash code/reproduce_gpu.sh receive DIR # here, after each command: DIR = the files that came
#                                          # back; checkpoints into results/runs/paper, state
#                                          # into results/carry for the next lease
#   bash code/reproduce_gpu.sh finish      # here, once the grid is trained: evaluate.py (CPU),
#                                          # speed.md, the device's notes -> results/paper
#   bash code/reproduce_gpu.sh rehearse    # here, on the CPU: two leases of a tiny grid, with
#                                          # receive and finish (KEEP=1 keeps the files; a test)
#
# A lease is 15 device minutes, the machine's start included, one command <= 10 min: about 11
# minutes of training. The default grid needs ~25 on an H200 (README, "Reproduction on one
# GPU"), so its state travels between leases (code/carry.py): every reproduce ends by writing
# into $OUT the resume state (~42 MiB gzipped for 14 runs, in 15 MiB parts) and the checkpoints
# written since the last export (the trunk alone at the compared epochs, the whole network at
# the last), and the next lease carries results/carry back (carry ["data/mnist-xz",
# "results/carry"]; `receive` prints the size that travels, at most 64 MiB). Two commands in one
# lease run on the same warm machine, whose run folder (git-ignored) stays between them:
#   1. export T0=$(date +%s); [first lease: bash code/reproduce_gpu.sh probe;] CALL_S=540 bash code/reproduce_gpu.sh reproduce
#   2. export T0=$(date +%s); CALL_S=<what the lease has left, less 30> bash code/reproduce_gpu.sh reproduce
# with `receive` here after each. reproduce trains until CALL_S seconds after T0 less PACK_S for
# the export. A grid that completes in a lease that also started it (nothing carried in) is
# evaluated on the device when EVAL_S seconds are left (or FINAL=1); otherwise `finish` here.
#
# Settings (environment): OUT (default results/device-out), T0 (epoch seconds the command's
# clock starts at; default: now), CALL_S (seconds the command may take, default 570), EVAL_S
# (default 100), PACK_S (default 40), FINAL (1: evaluate on the device at the end whatever is
# trained), TRAIN_MIN (a fixed training budget, minutes, instead of the clock's), GRID (full |
# table1 | auto; default full; auto: full if the probe projects it inside TOTAL_TRAIN_S, else
# Table 1's 8 runs), DEVICE (default cuda), RUNS (results/runs/paper), CARRY (results/carry),
# RESULTS (finish's outputs, results/paper), DEVICE_RESULTS (what a device command evaluates and
# packs into $OUT/paper-results.tar.gz, results/device-out/paper: git-ignored, so the committed
# results/paper never travels back in it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/code:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/results/device-out}
T0=${T0:-$(date +%s)}
CALL_S=${CALL_S:-570}
EVAL_S=${EVAL_S:-100}
PACK_S=${PACK_S:-40}
FINAL=${FINAL:-0}
TOTAL_TRAIN_S=${TOTAL_TRAIN_S:-540}
GRID=${GRID:-full}
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-results/runs/paper}
RESULTS=${RESULTS:-results/paper}
DEVICE_RESULTS=${DEVICE_RESULTS:-results/device-out/paper}
CARRY=${CARRY:-results/carry}
STATE=${STATE:-$RUNS/.device}  # the probe's files and the leases' notes: travel with the runs
RAW=data/MNIST/raw
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
mkdir -p "$OUT" "$STATE"

say() { echo "reproduce_gpu: $*" | tee -a "$STATE/plan.md"; }
left() { echo $((CALL_S - ($(date +%s) - T0))); }  # seconds this command has left
until_end() { local s=$(( $(left) - $1 )); echo $(( s > 1 ? s : 1 )); }  # left less $1, >= 1

pack_data() {  # 55 MB of IDX files -> 9 MB (xz), so that the state fits beside them
    python3 -c "import al2; al2.load_mnist()"
    mkdir -p data/mnist-xz
    for f in $FILES; do xz -9 -c "$RAW/$f" > "data/mnist-xz/$f.xz"; done
    du -sh data/mnist-xz
}

unpack_data() {  # the device reaches no package index: MNIST comes compressed with the tree
    mkdir -p "$RAW"
    python3 - "$RAW" $FILES <<'PY'
import lzma, shutil, sys
from pathlib import Path
raw = Path(sys.argv[1])
for name in sys.argv[2:]:
    if not (raw / name).is_file() or not (raw / name).stat().st_size:
        with lzma.open(f"data/mnist-xz/{name}.xz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
    python3 -c "import al2; al2.load_mnist(download=False)"  # MD5s checked
}

probe() {  # each step may fail without ending the lease: training falls back (eager, grouped)
    local variants=grouped,grouped-nchw,gemm
    unpack_data
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        > "$STATE/gpu.txt" || echo "$DEVICE" > "$STATE/gpu.txt"
    cat "$STATE/gpu.txt"
    timeout 150 python3 code/check_device.py --device "$DEVICE" --steps "${CHECK_STEPS:-300}" \
        --weight-steps "${CHECK_WEIGHT_STEPS:-20}" --conv2 "$variants" \
        2>&1 | tee "$STATE/check.txt" || say "device check: a difference past its tolerance or an error (check.txt)"
    if [ "$DEVICE" = cuda ] && ! grep -q "^graph step: ok" "$STATE/check.txt"; then
        say "no CUDA-graph step passed its check: training runs the eager step (--no-cuda-graph)"
        touch "$STATE/no-graph"
    fi
    timeout 150 python3 code/bench_train.py --device "$DEVICE" --runs "${PROBE_RUNS:-1,8,14,24}" \
        --samples "${PROBE_SAMPLES:-12800}" --test-images "${PROBE_TEST_IMAGES:-10000}" \
        --precisions fp32,tf32 --modes eager,graph --repeats 1 --no-authors \
        --markdown "$STATE/probe.md" --json "$STATE/probe.json" > /dev/null \
        || say "speed probe failed: the grid is chosen without it"
    # the grid's R, each way of computing the convolutions: conv2 first, then conv1 with it
    kernel_probe conv2 "--conv2 grouped-nchw,gemm"
    choose conv2 > "$STATE/conv2" || echo grouped > "$STATE/conv2"
    if [ "$DEVICE" = cuda ] && [ ! -f "$STATE/no-graph" ]; then
        timeout 150 python3 code/check_device.py --device "$DEVICE" --steps "${CHECK_STEPS:-300}" \
            --weight-steps "${CHECK_WEIGHT_STEPS:-20}" --conv2 "$(cat "$STATE/conv2")" \
            --conv1 gemm > "$STATE/check-conv1.txt" 2>&1 || true
        cat "$STATE/check-conv1.txt" >> "$STATE/check.txt"
    fi
    kernel_probe conv1 "--conv2 $(cat "$STATE/conv2") --conv1 gemm"
    choose conv1 > "$STATE/conv1" || echo cudnn > "$STATE/conv1"
    say "convolutions: conv2 $(cat "$STATE/conv2"), conv1 $(cat "$STATE/conv1") (the fastest that passed the check)"
    timeout 60 python3 code/profile_step.py --device "$DEVICE" --runs "${PROFILE_RUNS:-14}" \
        --steps 50 --conv2 "$(cat "$STATE/conv2")" --conv1 "$(cat "$STATE/conv1")" \
        > "$STATE/profile.md" 2>/dev/null || say "profile failed"
    cat "$STATE/probe.md" "$STATE/profile.md" 2>/dev/null || true
}

kernel_probe() {  # $1: conv2 | conv1; $2: bench_train flags. R = 14, fp32, graph (CUDA only)
    [ "$DEVICE" = cuda ] && [ ! -f "$STATE/no-graph" ] || return 0
    timeout 60 python3 code/bench_train.py --device "$DEVICE" --runs 14 \
        --samples "${PROBE_SAMPLES:-12800}" --test-images "${PROBE_TEST_IMAGES:-10000}" \
        --precisions fp32 --modes graph $2 --repeats 1 --no-authors \
        --json "$STATE/probe-$1.json" > /dev/null || say "$1 probe failed: training keeps the default"
}

choose() {  # $1: conv2 | conv1: the fastest at R = 14, fp32, graph among the checked ones;
            # the probe's rows are merged into probe.json (speed.md shows them all)
    python3 - "$STATE" "$1" <<'PY'
import json, re, sys
from pathlib import Path
state, layer = Path(sys.argv[1]), sys.argv[2]
default = {"conv2": "grouped", "conv1": "cudnn"}[layer]
if not (state / "probe.json").exists():
    print(default)
    sys.exit()
probe = json.loads((state / "probe.json").read_text())
extra = state / f"probe-{layer}.json"
if extra.exists():
    probe["rows"] += json.loads(extra.read_text())["rows"]
    (state / "probe.json").write_text(json.dumps(probe, indent=2))
check = state / ("check.txt" if layer == "conv2" else "check-conv1.txt")
usable = re.findall(r"^usable conv2: (.*)$", check.read_text() if check.exists() else "", re.M)
usable = usable[0].split() if usable and usable[0] != "none" else []
conv2 = (state / "conv2").read_text().strip() if layer == "conv1" else None
timed = {}
for r in probe["rows"]:
    c2, c1 = r.get("conv2", "grouped"), r.get("conv1", "cudnn")
    if r["runs"] != 14 or r["config"] != "fp32 graph":
        continue
    if layer == "conv2" and c1 == "cudnn" and c2 in usable:
        timed[c2] = r["steps_per_s"]
    if layer == "conv1" and c2 == conv2 and (c1 == "cudnn" or conv2 in usable):
        timed[c1] = r["steps_per_s"]
print(max(timed, key=timed.get) if timed else default)
PY
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
    [ -s "$STATE/conv2" ] && args+=(--conv2 "$(cat "$STATE/conv2")")
    [ -s "$STATE/conv1" ] && args+=(--conv1 "$(cat "$STATE/conv1")")
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
    timeout "$(until_end "$PACK_S")" python3 code/evaluate.py --runs "$RUNS" --out "$DEVICE_RESULTS" \
        --device "$DEVICE" ${EVAL_ARGS:-} 2>&1 | tee "$STATE/evaluate.log" \
        || say "evaluate.py exited with an error or MISSING.md (evaluate.log)"
    speed_md "$DEVICE_RESULTS" $((SECONDS - start)) || say "speed_report.py failed"
}

speed_md() {  # $1/speed.md: every train.py call of the leases summed, $2 evaluation seconds
    python3 code/speed_report.py --runs "$RUNS" --out "$1/speed.md" \
        --train-seconds "$(awk '{s += $1} END {print s + 0}' "$STATE/train-seconds" 2>/dev/null)" \
        --train-calls "$(cat "$STATE/train-seconds" 2>/dev/null | wc -l)" \
        --evaluate-seconds "$2" --probe "$STATE/probe.json" \
        --check "$STATE/check.txt" --profile "$STATE/profile.md"
}

reproduce() {
    unpack_data
    if [ ! -f "$RUNS/grid.json" ] && ls "$CARRY"/state.tar.gz.* > /dev/null 2>&1; then
        python3 code/carry.py import --carry "$CARRY" --runs "$RUNS"
        mkdir -p "$STATE" && touch "$STATE/imported"
        say "lease resumed from the carried state ($(ls "$CARRY"/state.tar.gz.* | wc -l) parts)"
    fi
    [ -f "$RUNS/shards/whole.json" ] || train
    if [ -f "$STATE/imported" ]; then
        [ -f "$RUNS/shards/whole.json" ] && say "the grid is trained: receive, then finish here (earlier leases' checkpoints are here, not on the device)"
    elif [ -f "$RUNS/shards/whole.json" ] || [ "$FINAL" = 1 ]; then
        if [ "$FINAL" = 1 ] || [ "$(left)" -ge "$EVAL_S" ]; then
            evaluate
        else
            say "the grid is trained: receive, then finish here"
        fi
    fi
    [ -f "$RUNS/shards/whole.json" ] || say "the grid is not trained yet: the next call or lease continues it"
    pack
    python3 code/carry.py export --runs "$RUNS" --out "$OUT"
    say "this call: $(( $(date +%s) - T0 )) s"
    ls -la "$OUT"
}

pack() {  # the device's results plus runs/ and device/ (collect): one small archive in $OUT
    collect "$DEVICE_RESULTS"
    tar -C "$(dirname "$DEVICE_RESULTS")" -czf "$OUT/paper-results.tar.gz" "$(basename "$DEVICE_RESULTS")"
}

collect() {  # $1/runs/<run>/{metrics.csv,config.json}, grid.json; $1/device/: the leases' notes
    local run
    mkdir -p "$1/runs" "$1/device"
    for run in "$RUNS"/*/metrics.csv; do
        [ -f "$run" ] || continue
        run=$(dirname "$run")
        mkdir -p "$1/runs/$(basename "$run")"
        cp "$run/metrics.csv" "$run/config.json" "$1/runs/$(basename "$run")/"
    done
    [ ! -f "$RUNS/grid.json" ] || cp "$RUNS/grid.json" "$1/runs/"
    cp "$STATE"/*.txt "$STATE"/*.md "$STATE"/*.json "$STATE"/*.log "$1/device/" 2>/dev/null || true
}

receive() {  # here: a command's files (the folder they came back to) into RUNS and CARRY
    [ -d "${1:-}" ] || { echo "usage: bash code/reproduce_gpu.sh receive FOLDER" >&2; exit 2; }
    python3 code/carry.py receive "$1" --carry "$CARRY" --runs "$RUNS"
    travel_size
}

travel_size() {  # what the next lease's command sends: the tree, data/mnist-xz, the carry
    local bytes
    bytes=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } \
        | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    bytes=$((bytes + $( { du -sb data/mnist-xz "$CARRY" 2>/dev/null || true; } \
        | awk '{s += $1} END {print s + 0}')))
    echo "reproduce_gpu: the next lease carries $((bytes / 1048576)) MiB (at most 64)"
    [ "$bytes" -le $((62 * 1048576)) ] || echo "reproduce_gpu: warning: within 2 MiB of the limit"
}

finish() {  # here: the received grid evaluated on this machine, with the leases' notes
    [ -f "$RUNS/grid.json" ] || { echo "reproduce_gpu: $RUNS holds no grid: receive a lease first" >&2; exit 2; }
    local start=$SECONDS
    python3 code/evaluate.py --runs "$RUNS" --out "$RESULTS" --device "${EVAL_DEVICE:-auto}" \
        ${EVAL_ARGS:-} || echo "reproduce_gpu: evaluate.py listed gaps in $RESULTS/MISSING.md"
    speed_md "$RESULTS" $((SECONDS - start))
    collect "$RESULTS"
}

rehearse() {  # two leases of a tiny grid on this CPU, each on a bare "device" folder
    local tmp
    tmp=$(mktemp -d /tmp/al2-rehearse.XXXXXX)
    export DEVICE=cpu CARRY="$tmp/carry" \
        PROBE_RUNS=1,8 PROBE_SAMPLES=640 PROBE_TEST_IMAGES=500 CHECK_STEPS=3 CHECK_WEIGHT_STEPS=2 \
        PROFILE_RUNS=1 \
        TRAIN_ARGS="--epochs 2 --subset 640 --test-subset 500 --activation-images 100" \
        EVAL_ARGS="--similarity-images 300 --ablation-images 200"
    local device1="RUNS=$tmp/lease1/runs DEVICE_RESULTS=$tmp/lease1/paper STATE=$tmp/lease1/runs/.device"
    local device2="RUNS=$tmp/lease2/runs DEVICE_RESULTS=$tmp/lease2/paper STATE=$tmp/lease2/runs/.device"
    local here="RUNS=$tmp/here/runs RESULTS=$tmp/here/paper STATE=$tmp/here/runs/.device"
    # lease 1: probe, then training stopped by its budget after the first epoch, export
    env $device1 OUT="$tmp/out1" bash "$0" probe > "$tmp/probe.log" 2>&1 || { cat "$tmp/probe.log"; return 1; }
    env $device1 OUT="$tmp/out1" TRAIN_MIN=0.0001 bash "$0" reproduce
    env $here bash "$0" receive "$tmp/out1"
    # lease 2, on a bare machine: import the carried state, finish, export; then finish here
    env $device2 OUT="$tmp/out2" bash "$0" reproduce
    env $here bash "$0" receive "$tmp/out2"
    env $here EVAL_DEVICE=cpu bash "$0" finish > "$tmp/finish.log" 2>&1 || { cat "$tmp/finish.log"; return 1; }
    python3 - "$tmp" <<'PY'
import csv, sys
from pathlib import Path
tmp = Path(sys.argv[1])
root = tmp / "here" / "paper"
out1 = sorted(p.name for p in (tmp / "out1").iterdir())
assert any(n.startswith("state.tar.gz.") for n in out1), f"lease 1 sent no state: {out1}"
assert not any(n.startswith("state.tar.gz.") for n in (p.name for p in (tmp / "out2").iterdir())), \
    "lease 2 finished the grid but still sent state"
assert not (tmp / "carry").exists(), "the carry should be emptied once the grid is finished"
assert "rebuilt at epoch 1" in (tmp / "lease2" / "runs" / ".device" / "plan.md").read_text() \
    or (tmp / "lease2" / "runs" / ".device" / "imported").exists()
need = ["table1.csv", "table1.md", "table1.png", "curves.png", "similarity.csv",
        "similarity.png", "ablation.csv", "ablation.png", "speed.md", "runs/grid.json",
        "device/probe.md", "device/check.txt", "device/plan.md", "device/profile.md"]
missing = [n for n in need if not (root / n).is_file()]
assert not (root / "MISSING.md").exists(), (root / "MISSING.md").read_text()
runs = sorted(p.parent.name for p in (root / "runs").glob("*/metrics.csv"))
missing += [f"{r}/config.json" for r in runs if not (root / "runs" / r / "config.json").is_file()]
epochs = {len(list(csv.DictReader(open(root / "runs" / r / "metrics.csv")))) - 1 for r in runs}
assert epochs == {2}, f"the grid should end at epoch 2: {epochs}"
# similarity at epochs 0 and 1 came from lease 1's trunk-only checkpoints, 2 from lease 2's
sim = {int(r["epoch"]) for r in csv.DictReader(open(root / "similarity.csv"))}
assert sim == {0, 1, 2}, sim
speed = (root / "speed.md").read_text()
assert "2 calls" in speed and "| 8 | fp32 eager |" in speed, speed
check = (root / "device" / "check.txt").read_text()
assert "Traceback" not in check and "cpu grouped vs cpu grouped eager" in check, check
print(f"rehearsal: {len(runs)} runs came back ({', '.join(runs)}); missing: {missing or 'none'}")
sys.exit(1 if missing or not runs else 0)
PY
    if [ -n "${KEEP:-}" ]; then echo "rehearsal files in $tmp"; else rm -rf "$tmp"; fi
}

case "${1:-}" in
    pack-data) pack_data ;;
    probe) probe ;;
    reproduce) reproduce ;;
    receive) receive "${2:-}" ;;
    finish) finish ;;
    rehearse) rehearse ;;
    *) echo "usage: bash code/reproduce_gpu.sh pack-data|probe|reproduce|receive DIR|finish|rehearse" >&2; exit 2 ;;
esac
