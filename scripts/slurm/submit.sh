#!/bin/bash
# Train a grid as an N-task Slurm array, then evaluate it once every task has succeeded.
#   bash scripts/slurm/submit.sh N RUNS_DIR OUT_DIR [train.py flags]     e.g.
#   bash scripts/slurm/submit.sh 4 results/runs/paper results/paper
# SBATCH_ARGS (environment) goes to both sbatch calls, e.g. "--gres=gpu:1 --partition=gpu";
# GRID_SBATCH_ARGS to the grid's tasks only, e.g. "--time=4:00:00" (a task stopped at its time
# limit requeues itself and resumes: grid.sbatch);
# LOGS: the folder for the jobs' slurm-*.out files (default: here); EVAL_ARGS: more
# evaluate.py flags; WAIT=1 waits for the evaluation to finish (sbatch --wait), as the CI test
# does. If a shard fails, the evaluation is cancelled (--kill-on-invalid-dep).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=$1 RUNS=$2 OUT=$3
shift 3
LOGS=${LOGS:-.}
grid=$(sbatch --parsable ${SBATCH_ARGS:-} ${GRID_SBATCH_ARGS:-} --output="$LOGS/slurm-%A_%a.out" \
       --array=0-$((N - 1)) scripts/slurm/grid.sbatch --out "$RUNS" "$@")
echo "grid: array job $grid ($N tasks)"
eval_args=(--parsable ${SBATCH_ARGS:-} --output="$LOGS/slurm-%j.out"
           --dependency=afterok:"$grid" --kill-on-invalid-dep=yes)
[ -n "${WAIT:-}" ] && eval_args+=(--wait)
job=$(sbatch "${eval_args[@]}" scripts/slurm/evaluate.sbatch --runs "$RUNS" --out "$OUT" \
      ${EVAL_ARGS:-})
echo "evaluate: job $job (after $grid)"
