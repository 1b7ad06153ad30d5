#!/bin/bash
# Queues a sharded run on Slurm: a job array of SHARDS tasks (shard.sbatch) and a merge job that
# starts when all of them succeeded (merge.sbatch, --dependency=afterok). Prints both job ids.
#
#   SHARDS=4 RECIPE=recipes/elora.edit OUT=results/elora-s0 SEED=0 \
#     MKEDSL_ARGS="--all" examples/slurm/submit.sh [extra sbatch flags, e.g. --partition=gpu]
#
# The environment (RECIPE, OUT, SEED, MKEDSL, MKEDSL_ARGS, MKEDSL_CACHE) is passed to the jobs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
: "${SHARDS:?set SHARDS to the number of shards}"
: "${RECIPE:?set RECIPE to the recipe file}"
: "${OUT:?set OUT to the folder of the parts}"
mkdir -p "$OUT"
export RECIPE OUT
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" --export=ALL \
    --chdir="$PWD" --output="$OUT/shard-%a.out" "$@" "$here/shard.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --export=ALL --chdir="$PWD" --output="$OUT/merge.out" "$@" "$here/merge.sbatch")
merge=${merge%%;*}
echo "$array $merge"
