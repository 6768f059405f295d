#!/usr/bin/env bash
# The whole test suite: unit tests, then interop tests against Debian's wireguard-go and wg in
# network namespaces. Installs the Debian packages the interop tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
# wg-quick runs iptables-restore / ip6tables-restore for a default route (AllowedIPs = 0.0.0.0/0, ::/0);
# the conformance suite's NAT router runs iptables.
command -v ip6tables-restore >/dev/null && command -v iptables >/dev/null || need+=(iptables)
# The web admin's browser tests drive Debian's chromium through playwright-core (never a downloaded browser).
test -x /usr/bin/chromium || need+=(chromium)
# The cluster tests start a throw-away PostgreSQL (test/pg-fixture.ts): initdb and pg_ctl.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing ${need[*]}; run as root so they can be installed" >&2
    exit 1
  fi
  echo "test.sh: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

npx tsc -p tsconfig.json
node --test --test-concurrency=1 dist/test/*.test.js dist/test/interop/*.test.js
