#!/bin/bash
# A recipe × seeds grid, every cell a sharded run with its own merge job:
#
#   SHARDS=8 RECIPES="recipes/elora.edit recipes/lora.edit" SEEDS="0 1 2" \
#     MKEDSL_ARGS="--all" examples/slurm/grid.sh results/
#
# writes results/<recipe>-seed<S>/merged.json per cell. The cells run side by side: each seed
# has its own cache entries (and lock), and the shards of one cell share theirs.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="${1:?usage: grid.sh RESULTS_DIR [extra sbatch flags]}"
shift
: "${RECIPES:?set RECIPES to the recipe files}"
: "${SEEDS:?set SEEDS to the seeds}"
for recipe in $RECIPES; do
    for seed in $SEEDS; do
        name="$(basename "$recipe" .edit)-seed$seed"
        ids=$(RECIPE="$recipe" SEED="$seed" OUT="$root/$name" "$here/submit.sh" "$@")
        echo "$name: array ${ids% *}, merge ${ids#* }"
    done
done
