#!/bin/bash
# Queues a `mkedsl sweep` on Slurm: one array task per run of the grid (sweep_task.sbatch) and a
# merge job that starts when all of them succeeded (sweep_merge.sbatch, --dependency=afterok).
# Prints both job ids.
#
#   RECIPE=recipes/lora.edit OUT=results/lora-sweep \
#     SWEEP_ARGS="--set lr=5e-4,1.5e-3,4.5e-3 --set rank=8,16 --seeds 3" \
#     MKEDSL_ARGS="--limit 60" examples/slurm/sweep.sh [extra sbatch flags, e.g. --partition=gpu]
#
# The grid is checked here, on the submitting machine (`--count` compiles every point against the
# model), so a bad value is refused before anything is queued.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
: "${RECIPE:?set RECIPE to the recipe file}"
: "${OUT:?set OUT to the folder of the parts}"
: "${SWEEP_ARGS:?set SWEEP_ARGS to the grid, e.g. --set lr=1e-3,3e-3 --seeds 3}"
# shellcheck disable=SC2086 # SWEEP_ARGS and MKEDSL_ARGS are lists of flags
runs=$("${MKEDSL:-mkedsl}" sweep "$RECIPE" ${SWEEP_ARGS} ${MKEDSL_ARGS:-} --count)
mkdir -p "$OUT"
export RECIPE OUT SWEEP_ARGS
array=$(sbatch --parsable --array="0-$((runs - 1))" --export=ALL \
    --chdir="$PWD" --output="$OUT/task-%a.out" "$@" "$here/sweep_task.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --export=ALL --chdir="$PWD" --output="$OUT/merge.out" "$@" "$here/sweep_merge.sbatch")
merge=${merge%%;*}
echo "$array $merge"
