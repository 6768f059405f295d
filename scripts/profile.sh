#!/usr/bin/env bash
# npm run profile: CPU profiles of both wireguard-ts daemons, every thread, during ~10 s of
# iperf3 TCP ours -> ours, and a summary of self time per function and per file per thread.
# Everything lands in profile/<date>/ (gitignored): the .cpuprofile files (load them in Chrome
# DevTools' Performance panel or speedscope for flame graphs), summary.txt, throughput.md.
# Arguments go to bench/throughput.js before the defaults, so they win:
#   npm run profile -- --workers 1 --seconds 5
#
# Not clinic flame: it samples only the main thread's isolate (clinic 13 with 0x 5.8, checked
# with a worker running a hot loop: the loop is absent from its samples), and the data plane
# runs in worker threads. node --cpu-prof writes one profile per thread.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "profile: run as root (network namespaces, TUN devices)" >&2
  exit 1
fi
npx tsc -p tsconfig.json
dir="$PWD/profile/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$dir"
WGTS_DAEMON_NODE_ARGS="--cpu-prof --cpu-prof-dir=$dir" node dist/bench/throughput.js "$@" \
  --pair ours-ours --workers default --streams 1 --seconds 10 --pids "$dir/pids.json" | tee "$dir/throughput.md"
node dist/bench/cpuprofile.js "$dir" > "$dir/summary.txt"
cat "$dir/summary.txt"
echo "profile: $dir"
