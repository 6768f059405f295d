// A large `set` is applied in steps between event-loop turns (src/device/apply.ts): while a
// 200,000-peer request is applied, a peer that was configured before completes handshakes,
// and at least one of them before the request's reply arrives. Before the steps, the whole
// request was one synchronous call of several seconds in which no initiation was answered.
// A `wg set` from another connection meanwhile waits its turn: its reply comes after the big
// one's, and its peer is there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Cleanup, SOCKET_DIR, ensureTools, isRoot, randomPublicKey, sh } from './harness.js';
import { BarePeer, startBareDaemon } from './bare-peer.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const PEERS = 200_000;
/** Initiations from one peer closer than 1/20 s apart are dropped as a flood (kernel INITIATIONS_PER_SECOND). */
const PROBE_SPACING_MS = 60;

/** `set=1` with `n` new peers, peer i owning 10.x.y.z/32 (i in the low bits). */
function bigSet(n: number): Buffer {
  const keys = randomBytes(32 * n).toString('hex');
  const lines = ['set=1'];
  for (let i = 0; i < n; i++) {
    lines.push(`public_key=${keys.slice(i * 64, i * 64 + 64)}`, `allowed_ip=10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
  }
  return Buffer.from(lines.join('\n') + '\n\n');
}

test(`a peer completes handshakes while a ${PEERS.toLocaleString('en')}-peer set is applied, before its reply`, { skip, timeout: 180_000 }, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const d = await startBareDaemon(cleanup, '10.210.0.1/16');
    const probe = new BarePeer(d.publicKey, cleanup);
    await probe.bind();
    d.wg('set', d.ifname, 'peer', probe.publicKeyB64, 'allowed-ips', '10.210.255.1/32', 'endpoint', probe.endpoint);
    assert.ok((await probe.probeHandshake(d.port)) !== undefined, 'a handshake before the set');
    const request = bigSet(PEERS);

    // The request goes over the UAPI socket as `wg` sends it; the probes start once all of it
    // is written (what the daemon still has to parse then is at most a socket buffer).
    const c = createConnection(`${SOCKET_DIR}/${d.ifname}.sock`);
    cleanup.add(() => void c.destroy());
    let reply = '';
    let replyAt = Infinity;
    const replied = new Promise<void>((resolve, reject) => {
      c.on('data', (b: Buffer) => {
        reply += b.toString('latin1');
        if (reply.endsWith('\n\n')) {
          replyAt = performance.now();
          resolve();
        }
      });
      c.on('error', reject);
    });
    await new Promise<void>((resolve) => c.write(request, () => resolve()));
    const writtenAt = performance.now();
    const other = randomPublicKey();
    // Sent once the big request is surely parsed (what was left of it is a socket buffer's
    // worth, ~10 ms) and surely still applying (~1 s or more).
    const otherSet = new Promise<{ code: number | null; at: number }>((resolve) => setTimeout(() => {
      const child = spawn('wg', ['set', d.ifname, 'peer', other, 'allowed-ips', '10.210.254.1/32'], { stdio: 'ignore' });
      child.on('close', (code) => resolve({ code, at: performance.now() }));
    }, 300));
    const completed: { at: number; ms: number }[] = [];
    let unanswered = 0;
    while (replyAt === Infinity) {
      const ms = await probe.probeHandshake(d.port, 1000);
      if (ms === undefined) unanswered++;
      else completed.push({ at: performance.now(), ms });
      // Counted from the answer: the daemon saw the last initiation at the latest then.
      await new Promise((r) => setTimeout(r, PROBE_SPACING_MS));
    }
    await replied;
    assert.equal(reply, 'errno=0\n\n');
    const second = await otherSet;
    assert.equal(second.code, 0, 'the other connection\'s set applied');
    assert.ok(second.at > replyAt, 'the other connection\'s set waited for the big one');
    const before = completed.filter((h) => h.at < replyAt);
    const summary = `${before.length} handshakes in the ${(replyAt - writtenAt).toFixed(0)} ms between the request written and its reply `
      + `(slowest ${Math.max(0, ...before.map((h) => h.ms)).toFixed(1)} ms, ${unanswered} unanswered within 1 s)`;
    process.stderr.write(`# ${summary}\n`);
    assert.ok(before.length >= 1, `no handshake completed before the set's reply: ${summary}`);
    const dump = sh('wg', ['show', d.ifname, 'dump']).trimEnd().split('\n');
    assert.equal(dump.length - 1, PEERS + 2, 'every peer of the set, the probe and the other set\'s peer');
    assert.ok(dump.some((l) => l.startsWith(`${other}\t`)));
  } finally {
    await cleanup.run();
  }
});
