#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine runs examples/slurm/: it installs Slurm and munge
# from Debian's packages, starts munged, slurmctld and slurmd on localhost (private ports, state
# and configuration under a temp folder), submits the shard job array and the merge job with
# examples/slurm/submit.sh, waits for them, and checks that the merged report equals an
# unsharded run of the same recipe (every field but the timing). Then it queues a 2 × 2 sweep of
# FT-L's `lr` with examples/slurm/sweep.sh (one array task per run, then the merge job) and checks
# that the merged sweep.json holds the scores of a one-process `mkedsl sweep`.
#
#   tests/slurm/run_cluster.sh            # needs root (apt-get, daemons); about 2 minutes once built
#
# CI runs it only when MKEDSL_SLURM_TEST=1 (see .ci/run). Settings: SHARDS (default 3), LIMIT
# (cases, default 6), RECIPE (default recipes/elora.edit), MKEDSL (a built binary; default: cargo
# build). The daemons are stopped on exit, success or failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"

SHARDS="${SHARDS:-3}"
LIMIT="${LIMIT:-6}"
RECIPE="${RECIPE:-recipes/elora.edit}"
started=$(date +%s)
say() { echo "[slurm-test +$(($(date +%s) - started))s] $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "run_cluster.sh installs packages and starts daemons: run it as root" >&2
    exit 2
fi

say "installing slurmctld, slurmd, slurm-client and munge from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge python3 >/dev/null
slurmctld -V

if [ -z "${MKEDSL:-}" ]; then
    say "building mkedsl"
    cargo build --quiet --bin mkedsl
    MKEDSL="${CARGO_TARGET_DIR:-$repo/target}/debug/mkedsl"
fi
MKEDSL="$(realpath "$MKEDSL")"
export MKEDSL

work="$(mktemp -d /tmp/mkedsl-slurm.XXXXXX)"
state="$work/state"
mkdir -p "$state/ctld" "$state/d" "$state/munge" "$work/results"
chmod 755 "$work" "$state"
pids=()
cleanup() {
    for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munged.pid"; do
        if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

say "starting munged (key and socket under $state/munge)"
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$state/munge"
chmod 711 "$state/munge"
chmod 400 "$state/munge/munge.key"
socket="$state/munge/munge.socket"
runuser -u munge -- /usr/sbin/munged --key-file="$state/munge/munge.key" \
    --socket="$socket" --pid-file="$state/munge/munged.pid" \
    --log-file="$state/munge/munged.log" --seed-file="$state/munge/munged.seed"
cp "$state/munge/munged.pid" "$state/munged.pid"
munge -S "$socket" -n | unmunge -S "$socket" >/dev/null

host="$(hostname -s)"
cpus="$(nproc)"
export SLURM_CONF="$state/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=mkedsl-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

say "starting slurmctld and slurmd ($cpus CPUs, node $host)"
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; then break; fi
    sleep 1
done
sinfo
sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)$' || {
    tail -20 "$state/slurmctld.log" "$state/slurmd.log" >&2
    echo "the node did not come up" >&2
    exit 1
}

out="$work/results/run"
cache="$work/cache"
args="--limit $LIMIT --max-new-tokens 8"
say "submitting $SHARDS shards of $RECIPE ($LIMIT cases) and the merge job"
ids=$(SHARDS="$SHARDS" RECIPE="$RECIPE" OUT="$out" MKEDSL_CACHE="$cache" \
    MKEDSL_ARGS="$args" examples/slurm/submit.sh)
array="${ids% *}"
merge="${ids#* }"
say "array job $array, merge job $merge (afterok:$array)"

say "meanwhile: the unsharded run on this shell, for comparison"
# shellcheck disable=SC2086
"$MKEDSL" run "$RECIPE" $args --no-cache --json "$work/unsharded.json" >"$work/unsharded.out" 2>/dev/null

for _ in $(seq 900); do
    if [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then break; fi
    sleep 1
done
if [ -n "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then
    squeue
    echo "the jobs did not finish within 15 minutes" >&2
    exit 1
fi
say "jobs done"
for f in "$out"/shard-*.out; do
    echo "--- $(basename "$f"): $(grep -E '^(shard|time)  ' "$f" | tr '\n' ' ')"
done
(cd "$out" && grep -H "cache entries\|computed\|reusing" shard-*.out) || true
echo "--- merge.out"
cat "$out/merge.out"
test -s "$out/merged.json" || {
    echo "no merged report: see $out" >&2
    tail -20 "$state/slurmctld.log" >&2
    exit 1
}

python3 - "$out/merged.json" "$work/unsharded.json" "$SHARDS" <<'PY'
import json, sys
merged, whole = (json.load(open(p)) for p in sys.argv[1:3])
for r in (merged, whole):
    r.pop("timing")
assert merged["cases"] == whole["cases"], (merged["cases"], whole["cases"])
if merged != whole:
    diff = [k for k in whole if merged.get(k) != whole[k]]
    sys.exit(f"merged report differs from the unsharded one in {diff}")
m = whole["metrics"]
print(f"merged == unsharded: {whole['cases']} cases from {sys.argv[3]} shards; "
      f"Rel {100*m['rel']:.1f} T-Gen {100*m['t_gen']:.1f} M-Gen {100*m['m_gen']:.1f} "
      f"T-Loc {100*m['t_loc']:.1f} M-Loc {100*m['m_loc']:.1f}")
PY
sweep_out="$work/results/sweep"
sweep_args="--set lr=5e-4,1.5e-3 --seeds 2"
say "submitting a sweep of recipes/ft_l.edit ($sweep_args, 2 cases): one array task per run, then the merge"
ids=$(RECIPE=recipes/ft_l.edit OUT="$sweep_out" SWEEP_ARGS="$sweep_args" MKEDSL_CACHE="$cache" \
    MKEDSL_ARGS="--limit 2 --max-new-tokens 8" examples/slurm/sweep.sh)
array="${ids% *}"
merge="${ids#* }"
say "sweep array job $array, merge job $merge (afterok:$array)"
# shellcheck disable=SC2086
"$MKEDSL" sweep recipes/ft_l.edit $sweep_args --limit 2 --max-new-tokens 8 --no-cache \
    --out "$work/sweep-one" >/dev/null 2>&1
for _ in $(seq 900); do
    if [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then break; fi
    sleep 1
done
say "sweep jobs done"
echo "--- sweep merge.out"
cat "$sweep_out/merge.out"
test -s "$sweep_out/sweep.json" || {
    echo "no merged sweep: see $sweep_out" >&2
    exit 1
}
python3 - "$sweep_out/sweep.json" "$work/sweep-one/sweep.json" <<'PY'
import json, sys
merged, one = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda f: [(p["task"], p["set"], p["seed"], p["report"]["metrics"]) for p in f["points"]]
assert key(merged) == key(one), "merged sweep differs from the one-process sweep"
assert [s["metrics"] for s in merged["summary"]] == [s["metrics"] for s in one["summary"]]
print(f"merged sweep == one-process sweep: {len(merged['points'])} runs, {len(merged['summary'])} points")
PY
say "OK"
