// The userspace device against the real thing: wireguard-ts and wireguard-go in two network
// namespaces joined by a veth pair, configured with `wg`, with real traffic in both directions.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot, waitFor } from './harness.js';
import { createPair, iperf, peerDump, ping, type Host, type Impl } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';

function interopSuite(a: Impl, b: Impl, opts: { outer?: 4 | 6; traffic?: boolean } = {}): void {
  describe(`${a} <-> ${b}${opts.outer === 6 ? ' over IPv6' : ''}`, { skip }, () => {
    const cleanup = new Cleanup();
    let A: Host;
    let B: Host;
    before(async () => {
      ensureTools();
      ({ a: A, b: B } = await createPair(cleanup, { a, b, psk: true, outer: opts.outer }));
    });
    after(() => cleanup.run());

    test(`${a} initiates: IPv4 and IPv6 pings both ways`, { timeout: 30_000 }, () => {
      assert.ok(ping(A, B.tunnel4), 'A -> B IPv4');
      assert.ok(ping(B, A.tunnel4), 'B -> A IPv4');
      assert.ok(ping(A, B.tunnel6), 'A -> B IPv6');
      assert.ok(ping(B, A.tunnel6), 'B -> A IPv6');
    });

    test('a 1392-byte ping with DF set fills the 1420-byte MTU', { timeout: 20_000 }, () => {
      assert.ok(ping(A, B.tunnel4, ['-M', 'do', '-s', '1392']), 'A -> B');
      assert.ok(ping(B, A.tunnel4, ['-M', 'do', '-s', '1392']), 'B -> A');
    });

    test('wg show reports the handshake and transfer counters that match the other side', { timeout: 20_000 }, async () => {
      const now = Date.now() / 1000;
      const dA = peerDump(A, B.publicKey);
      assert.ok(dA.latestHandshake > now - 60 && dA.latestHandshake <= now + 1, `latest handshake ${dA.latestHandshake}`);
      // Counters settle once in-flight packets land; each side's tx is the other's rx.
      await waitFor('matching transfer counters', () => {
        const x = peerDump(A, B.publicKey);
        const y = peerDump(B, A.publicKey);
        return x.rx === y.tx && x.tx === y.rx && x.rx > 0 && x.tx > 0;
      }, 5000);
    });

    if (opts.traffic !== false) {
      test('iperf3 TCP for 5 s in each direction', { timeout: 60_000 }, async () => {
        const ab = await iperf(cleanup, A, B, 5);
        const ba = await iperf(cleanup, B, A, 5);
        console.log(`# iperf3 ${a}->${b}: ${(ab / 1e6).toFixed(0)} Mbit/s, ${b}->${a}: ${(ba / 1e6).toFixed(0)} Mbit/s`);
        assert.ok(ab > 0 && ba > 0);
        assert.ok(ping(A, B.tunnel4), 'the tunnel still works after the load');
      });
    }
  });
}

/** The other side initiates: a fresh pair where B sends first. */
function responderSuite(a: Impl, b: Impl): void {
  describe(`${b} initiates to ${a}`, { skip }, () => {
    const cleanup = new Cleanup();
    after(() => cleanup.run());
    test('handshake started by the other side, then traffic both ways', { timeout: 30_000 }, async () => {
      ensureTools();
      const { a: A, b: B } = await createPair(cleanup, { a, b, psk: true });
      assert.ok(ping(B, A.tunnel4), 'B -> A');
      assert.ok(ping(A, B.tunnel4), 'A -> B');
      assert.ok(peerDump(A, B.publicKey).latestHandshake > 0);
    });
  });
}

interopSuite('ours', 'wggo');
responderSuite('ours', 'wggo');
interopSuite('ours', 'ours');
interopSuite('ours', 'wggo', { outer: 6, traffic: false });
