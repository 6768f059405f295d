// Reading a daemon's metrics endpoint from inside its namespace, for tests that assert on them.
import assert from 'node:assert/strict';
import { tryRun } from './harness.js';
import type { Host } from './topology.js';
import { DEFAULT_METRICS_PORT } from '../../src/metrics/server.js';

/** Fetches `url` from inside `ns` (no curl there: node's fetch in a child); exit 1 on failure. */
const FETCH = `fetch(process.argv[1]).then(async (r) => {
  if (!r.ok) throw new Error('HTTP ' + r.status);
  process.stdout.write(await r.text());
}).catch((e) => { process.stderr.write(String(e.cause ?? e)); process.exit(1); });`;

export function fetchIn(ns: string, url: string): { status: number; out: string } {
  return tryRun('ip', ['netns', 'exec', ns, process.execPath, '-e', FETCH, url]);
}

export function scrape(host: Host, port = DEFAULT_METRICS_PORT): string {
  const r = fetchIn(host.ns, `http://127.0.0.1:${port}/metrics`);
  if (r.status !== 0) throw new Error(`scrape failed: ${r.out}`);
  return r.out;
}

/** The sum over all series of `name` whose labels include `match` (a fragment like `reason="no_route"`). */
export function total(body: string, name: string, match: string): number {
  let sum = 0;
  let found = false;
  for (const line of body.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(match)) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      found = true;
    }
  }
  assert.ok(found, `a series ${name} with ${match}`);
  return sum;
}

