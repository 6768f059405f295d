#!/usr/bin/env bash
# npm run bench: every benchmark, each printing its own table.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
for b in replay ring timers allowedips pipeline; do
  [ -f "dist/bench/$b.js" ] && node "dist/bench/$b.js"
done
# The cluster's control plane on a throw-away PostgreSQL (no root needed, but initdb is).
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null; then
  node dist/bench/cluster.js
fi
if [ "$(id -u)" -eq 0 ]; then
  node dist/bench/syscalls.js
  node dist/bench/throughput.js
  node dist/bench/udp.js
  node dist/bench/latency.js
  node dist/bench/rss.js
  node dist/bench/peers.js
  node dist/bench/handshakes.js
else
  echo "bench: skipping syscalls, throughput, udp, latency, rss, peers and handshakes (they need root for TUN devices and namespaces)"
fi
