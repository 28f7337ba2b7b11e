#!/usr/bin/env bash
# Run a command and report its wall time and the peak resident memory of its whole process
# tree (the command and every worker it starts, summed), sampled every 2 s.
#
#   scripts/peak_rss.sh galsim-vae dataset CATALOG --out d.fits
set -uo pipefail
"$@" &
pid=$!
start=$(date +%s)
peak=0
tree_rss() {  # total RSS (kB) of a process and all its descendants
    local pids=$1 all=$1 kids
    while [ -n "$pids" ]; do
        kids=$(ps -o pid= --ppid "$(echo "$pids" | tr ' ' ',')" 2>/dev/null | tr '\n' ' ')
        pids=$(echo "$kids" | xargs)
        [ -n "$pids" ] && all="$all $pids"
    done
    ps -o rss= -p "$(echo "$all" | tr ' ' ',')" 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
while kill -0 "$pid" 2>/dev/null; do
    rss=$(tree_rss "$pid")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 2
done
wait "$pid"
rc=$?
echo "peak_rss.sh: exit $rc, $(( $(date +%s) - start )) s, peak memory $(( peak / 1024 )) MB (process tree)" >&2
exit $rc
