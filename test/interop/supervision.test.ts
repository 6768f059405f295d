// A data-plane worker that throws is restarted on its TUN queue and socket, and the sessions,
// which live in the shared tables, survive it (issue 12). The daemon runs with the tests-only
// hook WGTS_TEST_WORKER_FAULT=1, under which SIGUSR2 makes worker 0 throw at its next batch; a
// wireguard-go peer carries ping streams through the tunnel while the signal lands.
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Cleanup, ensureTools, isRoot, waitFor } from './harness.js';
import { createPair, ping, type Host } from './topology.js';
import { scrape } from './scrape.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const METRICS_PORT = 9599;
const PING_INTERVAL_S = 0.02;
/** How long traffic may stop while a worker is restarted. */
const MAX_GAP_S = 1;

function restarts(host: Host): number {
  const m = /^wireguard_worker_restarts_total(?:\{[^}]*\})? (\d+)$/m.exec(scrape(host, METRICS_PORT));
  assert.ok(m, 'the restart counter is exported');
  return Number(m[1]);
}

/** A ping stream from `from` to `to` (ping -D: each reply with its Unix time); resolves with the reply times, s. */
function pingStream(cleanup: Cleanup, from: Host, to: string, count: number): Promise<number[]> {
  const child = spawn('ip', ['netns', 'exec', from.ns, 'ping', ...(to.includes(':') ? ['-6'] : []), '-D', '-n', '-i', String(PING_INTERVAL_S),
    '-c', String(count), '-W', '1', '-w', String(Math.ceil(count * PING_INTERVAL_S) + 10), to], { stdio: ['ignore', 'pipe', 'ignore'] });
  cleanup.add(() => void child.kill());
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  return new Promise((resolve) => child.on('close', () => resolve([...out.matchAll(/^\[([\d.]+)\].*time=/gm)].map((m) => Number(m[1])))));
}

/** The longest time without a reply from `from` until the last reply, s. */
function longestGap(times: number[], from: number): number {
  let gap = 0;
  let last = from;
  for (const t of times) {
    if (t < from) continue;
    gap = Math.max(gap, t - last);
    last = t;
  }
  return gap;
}

async function faultUnderTraffic(workers: number): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const { a: A, b: B } = await createPair(cleanup, {
      a: 'ours', b: 'wggo',
      oursArgs: ['--workers', String(workers), '--metrics', `127.0.0.1:${METRICS_PORT}`],
      oursEnv: { WGTS_TEST_WORKER_FAULT: '1' },
    });
    assert.ok(ping(B, A.tunnel4), 'tunnel up');
    await waitFor('the metrics endpoint', () => { try { return restarts(A) === 0; } catch { return false; } }, 5000);
    const handshakesA = A.wg('show', A.ifname, 'latest-handshakes');
    const handshakesB = B.wg('show', B.ifname, 'latest-handshakes');

    // Three flows (two ICMP ids over IPv4, one over IPv6), so that with two workers some flow
    // is on worker 0's queue and socket; each runs about 4 s.
    const count = Math.round(4 / PING_INTERVAL_S);
    const streams = [pingStream(cleanup, B, A.tunnel4, count), pingStream(cleanup, B, A.tunnel4, count), pingStream(cleanup, B, A.tunnel6, count)];
    await new Promise((r) => setTimeout(r, 1000)); // let the streams run before the fault
    const faultAt = Date.now() / 1000;
    process.kill(A.proc.pid!, 'SIGUSR2');
    await waitFor('the worker restart to be counted', () => restarts(A) >= 1, 3000);
    const replies = await Promise.all(streams);

    assert.equal(A.exited(), false, 'the daemon is alive');
    assert.equal(restarts(A), 1, 'one restart counted');
    console.log(`${workers} worker(s): longest gap around the fault per stream (s): ${replies.map((t) => longestGap(t, faultAt - 0.5).toFixed(3)).join(', ')}`);
    for (const [i, times] of replies.entries()) {
      assert.ok(times.filter((t) => t > faultAt + MAX_GAP_S).length > 0, `stream ${i} has replies after the fault`);
      const gap = longestGap(times, faultAt - 0.5);
      assert.ok(gap < MAX_GAP_S, `stream ${i}: traffic stopped for ${gap.toFixed(3)} s around the fault (at most ${MAX_GAP_S} s)`);
    }
    assert.equal(A.wg('show', A.ifname, 'latest-handshakes'), handshakesA, 'no new handshake on our side: the same session');
    assert.equal(B.wg('show', B.ifname, 'latest-handshakes'), handshakesB, 'no new handshake on the peer\'s side');
    assert.ok(ping(A, B.tunnel4), 'traffic in the other direction still flows');
  } finally {
    await cleanup.run();
  }
}

describe('a worker that throws is restarted, sessions survive', { skip }, () => {
  before(() => ensureTools());
  test('one worker: it carries the traffic, which resumes within 1 s on the same session', { timeout: 30_000 }, () => faultUnderTraffic(1));
  test('two workers: worker 0 restarted, traffic resumes within 1 s on the same session', { timeout: 30_000 }, () => faultUnderTraffic(2));
});
