#!/usr/bin/env bash
# Run a sharded synthesis grid in the background and commit its finished shards as it goes.
#
#     nohup bash scripts/grid_background.sh [CONFIG] > work/grid_background.log 2>&1 &
#
# The run itself (specutils-cinn grid) is resumable: stars in committed shards are never
# synthesized again, so a new machine with only the repository continues where the last one
# stopped. Every INTERVAL seconds (default 600) new shards are committed on the current branch
# with a pathspec commit (nothing else that is staged is included); a failed commit (e.g. the
# index is locked by another git command) is retried at the next interval. NICE (default 5)
# is the niceness of the run: NICE=19 leaves the CPUs to anything else (e.g. a training run)
# and synthesizes only in their idle time. PROCESSES (default: the configuration's) sets the
# worker processes.
set -u
CONFIG=${1:-configs/grid-4most-lte-v2.toml}
INTERVAL=${INTERVAL:-600}
SHARDS=$(python - "$CONFIG" <<'PY'
import sys
from specutils_cinn.synthesis.runner import GridConfig
c = GridConfig.from_toml(sys.argv[1])
print(c.shards)
PY
)
# the Turbospectrum install (a no-op when it is there and up to date; gfortran needed)
specutils-cinn synthesis build || { echo "synthesis build failed"; exit 2; }
mkdir -p "$SHARDS"
REL=$(realpath -m --relative-to="$(git rev-parse --show-toplevel)" "$SHARDS")
[ -n "$REL" ] || { echo "cannot locate the shard folder $SHARDS"; exit 2; }
nice -n "${NICE:-5}" specutils-cinn grid "$CONFIG" ${PROCESSES:+--processes "$PROCESSES"} &
RUN=$!
commit_shards() {
    git add -- "$REL" 2>/dev/null || return
    if ! git diff --cached --quiet -- "$REL"; then
        n=$(ls "$SHARDS"/shard_*.h5 2>/dev/null | wc -l)
        git commit -q -m "grid v2: $n shards ($(date -u +%FT%TZ))" -- "$REL" \
            && echo "$(date -u +%T) committed $n shards"
    fi
}
while kill -0 "$RUN" 2>/dev/null; do
    sleep "$INTERVAL" & wait $!
    commit_shards
done
wait "$RUN"; rc=$?
commit_shards
echo "$(date -u +%T) grid run ended (exit $rc)"
exit $rc
