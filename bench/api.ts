// Pagination of the HTTP API at 100,000 clients (issue 14: p95 <= 100 ms per page): the
// daemon's server side with its store and a fake device holding every client as a peer (the
// list joins live figures from the device), requests over loopback HTTP with a bearer token.
// Prints a table: p50 / p95 / max per kind of page. The store is a SQLite file, or with
// --postgres a throw-away PostgreSQL (test/pg-fixture.ts; importing 100k takes minutes).
//
//   node dist/bench/api.js [--postgres] [CLIENTS] [REQUESTS]
import { parseArgs } from 'node:util';
import { startPostgres } from '../test/pg-fixture.js';
import { startFixture } from '../test/server-fixture.js';

const { values, positionals } = parseArgs({ options: { postgres: { type: 'boolean', default: false } }, allowPositionals: true });
const CLIENTS = Number(positionals[0] ?? 100_000);
const REQUESTS = Number(positionals[1] ?? 60);
const pg = values.postgres ? startPostgres() : undefined;

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function measure(store: string | undefined): Promise<void> {
  const t0 = performance.now();
  const f = await startFixture({ clients: CLIENTS, bulk: true, ...(store !== undefined ? { store } : {}) });
  console.log(`${CLIENTS} clients in the ${store !== undefined ? 'PostgreSQL' : 'SQLite'} store and on the device in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Pages use the latest device reading and never wait for one; the timings below include the
  // background readings (a UAPI get of every peer each second while pages are asked for).
  const last = Math.max(0, CLIENTS - 50);
  const kinds: [string, (i: number) => string][] = [
    ['first page, by name', () => '/api/v1/clients?limit=50&sort=name'],
    ['random page, by name', (i) => `/api/v1/clients?limit=50&sort=name&offset=${(i * 7919 * 50) % CLIENTS}`],
    ['last page, by address desc', () => `/api/v1/clients?limit=50&sort=address&order=desc&offset=${last}`],
    ['random page, by created', (i) => `/api/v1/clients?limit=50&sort=created&offset=${(i * 104729 * 50) % CLIENTS}`],
    ['search name part', (i) => `/api/v1/clients?limit=50&q=${String(i * 37 % 1000).padStart(3, '0')}`],
    // Every name holds 'ient': a search matching every client (SQLite scans rather than use its index).
    ['search every name', () => '/api/v1/clients?limit=50&q=ient'],
    ['search address', (i) => `/api/v1/clients?limit=50&q=10.0.${(i * 13) % 256}.${(i * 7) % 250 + 2}`],
    ['one client', (i) => `/api/v1/clients/${(i * 7919) % CLIENTS + 1}`],
  ];
  const rows: string[][] = [];
  for (const [name, path] of kinds) {
    const times: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const s = performance.now();
      const r = await f.api('GET', path(i));
      times.push(performance.now() - s);
      if (r.status !== 200) throw new Error(`${path(i)}: ${r.status} ${r.text}`);
    }
    times.sort((a, b) => a - b);
    rows.push([name, pct(times, 50).toFixed(1), pct(times, 95).toFixed(1), times.at(-1)!.toFixed(1)]);
  }
  const table = [['page', 'p50 ms', 'p95 ms', 'max ms'], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  console.log(table.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n'));
  const worst = Math.max(...rows.map((r) => Number(r[2])));
  console.log(`worst p95 ${worst.toFixed(1)} ms (target <= 100 ms)`);
  await f.close();
}

try {
  await measure(pg !== undefined ? await pg.createDatabase('bench') : undefined);
} finally {
  pg?.close();
}
