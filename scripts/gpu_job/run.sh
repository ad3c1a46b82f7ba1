#!/usr/bin/env bash
# The paper's experiment as one time-limited GPU job: probe the training step's variants, train
# the default paper grid (14 runs x 700 epochs, strict fp32) with the fastest that passed, under
# a budget, evaluate it on the GPU and pack results/paper into the output folder.
#
#   bash scripts/gpu_job/run.sh OUTPUT [MINUTES]    # the job; MINUTES: this call's whole budget
#   bash scripts/gpu_job/run.sh --pack-data         # before the first job, where pip works
#
# The same call again on the same machine resumes from the run folder and finishes. See
# README.md beside this file. Environment (defaults): PYTHON (python3), DEVICE (cuda), RUNS
# (results/runs/paper), RESULTS (results/runs/paper-results: what is evaluated and packed),
# NOTES (results/runs/paper-notes: the probe's choice, the calls' times), EVAL_S (90: seconds
# kept for the evaluation), PACK_S (30), TRAIN_MINUTES (a fixed training budget instead),
# TRAIN_ARGS, EVAL_ARGS, PROBE_ARGS (more flags; the CPU rehearsal makes the grid tiny with
# them), CARRY_IN (carried state to start from, carry.py import).
set -euo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
PY=${PYTHON:-python3}
# The repository is not installed on a GPU image: code/ holds the package al2, the root svcca.
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/code:$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=${DEVICE:-cuda}
RUNS=${RUNS:-results/runs/paper}
RESULTS=${RESULTS:-results/runs/paper-results}
NOTES=${NOTES:-results/runs/paper-notes}
EVAL_S=${EVAL_S:-90}
PACK_S=${PACK_S:-30}
RAW=data/MNIST/raw
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

say() { echo "gpu_job: $*" | tee -a "$NOTES/job.log"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }   # seconds this call has left

pack_data() {  # 55 MB of IDX files -> 9 MB (xz): the GPU machine reaches no package index
    "$PY" -c "import al2; al2.load_mnist()"
    "$PY" - "$RAW" data/mnist-xz $FILES <<'PY'
import lzma, shutil, sys
from pathlib import Path
raw, packed = Path(sys.argv[1]), Path(sys.argv[2])
packed.mkdir(parents=True, exist_ok=True)
for name in sys.argv[3:]:
    with open(raw / name, "rb") as src, lzma.open(packed / f"{name}.xz", "wb", preset=9) as dst:
        shutil.copyfileobj(src, dst)
print(f"{packed}: {sum(p.stat().st_size for p in packed.iterdir()) / 2**20:.1f} MiB")
PY
}

unpack_data() {  # the files missing under data/MNIST/raw, from data/mnist-xz; MD5s checked
    "$PY" - "$RAW" data/mnist-xz $FILES <<'PY'
import lzma, os, shutil, sys
from pathlib import Path
raw, packed = Path(sys.argv[1]), Path(sys.argv[2])
raw.mkdir(parents=True, exist_ok=True)
for name in sys.argv[3:]:
    if (raw / name).is_file() and (raw / name).stat().st_size:
        continue
    if not (packed / f"{name}.xz").is_file():
        sys.exit(f"gpu_job: no {raw / name} and no {packed}: run --pack-data first")
    with lzma.open(packed / f"{name}.xz") as src, open(raw / f"{name}.tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(raw / f"{name}.tmp", raw / name)
PY
    "$PY" -c "import al2; al2.load_mnist(download=False)"
}

probe() {  # once per machine: the choice is kept in $NOTES/probe.json for a resumed call
    [ -s "$NOTES/probe.json" ] && return 0
    say "probe: every step variant checked in float64, then timed (code/bench/probe_step.py)"
    timeout 120 "$PY" code/bench/probe_step.py --device "$DEVICE" --json "$NOTES/probe.json" \
        ${PROBE_ARGS:-} || say "probe failed: training takes the default step"
}

choice() {  # train.py flags of the probe's choice; without one, the eager step (the reference)
    "$PY" -c "import json, sys
try:
    c = json.load(open(sys.argv[1]))['choice']
    graph = c.get('cuda_graph', True)
except (OSError, ValueError, KeyError, TypeError):
    c, graph = {'trunk': 'grouped', 'cudnn_benchmark': False}, False
print('--trunk', c['trunk'], '--cudnn-benchmark' if c['cudnn_benchmark'] else '',
      '--optimizer flat' if c.get('optimizer') == 'flat' else '',
      '' if graph else '--no-cuda-graph')" "$NOTES/probe.json"
}

train() {  # budgeted, resuming whatever the run folder holds
    local budget start=$(date +%s)
    budget=${TRAIN_MINUTES:-$("$PY" -c "print(round(($(left) - $EVAL_S - $PACK_S) / 60, 3))")}
    if "$PY" -c "import sys; sys.exit(float('$budget') > 0)"; then
        say "no time left to train in this call"; return 0
    fi
    say "training for at most $budget min: $(choice)"
    # shellcheck disable=SC2046
    timeout $(( $(left) > 10 ? $(left) - 5 : 5 )) "$PY" code/train.py --device "$DEVICE" \
        --out "$RUNS" --resume --no-progress --checkpoint-epochs 50 --time-budget "$budget" \
        $(choice) ${TRAIN_ARGS:-} 2>&1 | tee -a "$NOTES/job.log" || say "train.py stopped with an error"
    echo $(( $(date +%s) - start )) >> "$NOTES/train-seconds"
}

evaluate() {  # whatever is trained: a grid short of its end gets MISSING.md beside its table
    local start=$(date +%s)
    [ "$(left)" -gt "$PACK_S" ] || { say "no time left to evaluate"; return 0; }
    timeout $(( $(left) - PACK_S )) "$PY" code/evaluate.py --runs "$RUNS" --out "$RESULTS" \
        --device "$DEVICE" ${EVAL_ARGS:-} 2>&1 | tee -a "$NOTES/job.log" \
        || say "evaluate.py listed gaps (MISSING.md) or stopped"
    "$PY" code/bench/speed_report.py --runs "$RUNS" --out "$RESULTS/speed.md" \
        --train-seconds "$(awk '{s += $1} END {print s + 0}' "$NOTES/train-seconds")" \
        --train-calls "$(wc -l < "$NOTES/train-seconds")" \
        --evaluate-seconds $(( $(date +%s) - start )) --probe "$NOTES/probe.json" > /dev/null \
        || say "speed_report.py failed"
}

grid_state() {  # none, unfinished or finished: what $RUNS holds
    "$PY" scripts/gpu_job/carry.py state --runs "$RUNS" 2>/dev/null || echo none
}

pack() {  # results only: tables, figures, metrics.csv and config.json of every run, speed.md
    mkdir -p "$OUTPUT" "$RESULTS/runs"
    "$PY" scripts/gpu_job/carry.py records --runs "$RUNS" --out "$RESULTS/runs" \
        >> "$NOTES/job.log" 2>&1 || say "carry.py records failed"
    tar -C "$RESULTS" -czf "$OUTPUT/paper-results.tar.gz" .
    if [ "$(grid_state)" = unfinished ]; then
        say "the grid is not finished: its state goes with the results (README.md, 'If the grid does not finish')"
        "$PY" scripts/gpu_job/carry.py export --runs "$RUNS" --out "$OUTPUT" 2>&1 \
            | tee -a "$NOTES/job.log" || say "carry.py export failed"
    fi
    say "this call: $(( $(date +%s) - START )) s"
    cp "$NOTES/job.log" "$OUTPUT/job.log"
}

case "${1:-}" in
    --pack-data) pack_data; exit 0 ;;
    ""|-*) echo "usage: bash scripts/gpu_job/run.sh OUTPUT [MINUTES] | --pack-data" >&2; exit 2 ;;
esac
OUTPUT=$1
BUDGET_S=$("$PY" -c "print(int(60 * float('${2:-9.5}')))")
mkdir -p "$NOTES" "$OUTPUT"
unpack_data
if [ -n "${CARRY_IN:-}" ] && [ "$(grid_state)" = none ]; then
    "$PY" scripts/gpu_job/carry.py import --carry "$CARRY_IN" --runs "$RUNS" 2>&1 \
        | tee -a "$NOTES/job.log" || say "carry.py import failed: training resumes from what $RUNS holds, if anything"
fi
probe
[ "$(grid_state)" = finished ] || train
evaluate
pack
