// What a deployed interface meets besides well-behaved peers: a peer that roams, packets that
// cryptokey routing must refuse, and a flood of malformed datagrams.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, createNetns, ensureTools, isRoot, rssKb, sh, tryRun, waitFor } from './harness.js';
import { createPair, peerDump, ping, type Host } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';

function tunRxPackets(h: Host): number {
  const out = sh('ip', ['-n', h.ns, '-s', '-j', 'link', 'show', h.ifname]);
  return (JSON.parse(out) as { stats64: { rx: { packets: number } } }[])[0]!.stats64.rx.packets;
}

describe('wireguard-ts facing a wireguard-go peer', { skip }, () => {
  const cleanup = new Cleanup();
  let A: Host; // ours
  let B: Host; // wireguard-go
  before(async () => {
    ensureTools();
    ({ a: A, b: B } = await createPair(cleanup, { a: 'ours', b: 'wggo' }));
    assert.ok(ping(A, B.tunnel4), 'tunnel up');
  });
  after(() => cleanup.run());

  test('a packet whose inner source is not the peer\'s allowed IP is dropped', { timeout: 20_000 }, () => {
    sh('ip', ['-n', B.ns, 'addr', 'add', '10.200.0.9/32', 'dev', B.ifname]);
    const before = tunRxPackets(A);
    const rxBefore = peerDump(A, B.publicKey).rx;
    assert.equal(ping(B, A.tunnel4, ['-I', '10.200.0.9', '-c', '2']), false, 'spoofed source gets no reply');
    assert.ok(peerDump(A, B.publicKey).rx > rxBefore, 'the packets did arrive and authenticate');
    assert.equal(tunRxPackets(A), before, 'nothing reached our interface');
    sh('ip', ['-n', B.ns, 'addr', 'del', '10.200.0.9/32', 'dev', B.ifname]);
  });

  test('a packet to an address no peer owns is never sent', { timeout: 20_000 }, () => {
    const txBefore = peerDump(A, B.publicKey).tx;
    assert.equal(ping(A, '10.200.0.77', ['-c', '2']), false);
    assert.equal(peerDump(A, B.publicKey).tx, txBefore, 'no bytes left for the peer');
  });

  test('20,000 malformed datagrams: the daemon stays up, memory stays flat, the tunnel works', { timeout: 60_000 }, () => {
    const pid = A.proc.pid!;
    const rssBefore = rssKb(pid);
    // A sender inside B's namespace: every message type with wrong sizes, random receiver
    // indices and garbage, and valid sizes with random contents.
    const script = `
      const dgram = require('node:dgram');
      const s = dgram.createSocket('udp4');
      let seed = 12345;
      const rnd = (n) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
      const sizes = [0, 1, 3, 4, 31, 32, 33, 47, 48, 63, 64, 65, 91, 92, 93, 147, 148, 149, 1500];
      let sent = 0;
      function burst() {
        for (let i = 0; i < 500 && sent < 20000; i++, sent++) {
          const len = rnd(4) === 0 ? rnd(1600) : sizes[rnd(sizes.length)];
          const b = Buffer.alloc(len);
          for (let j = 0; j < len; j++) b[j] = rnd(256);
          if (len >= 4 && rnd(5) !== 0) { b[0] = 1 + rnd(4); b[1] = b[2] = b[3] = 0; }
          s.send(b, ${A.port}, '${A.outer}');
        }
        if (sent < 20000) setTimeout(burst, 5); else setTimeout(() => s.close(), 200);
      }
      burst();`;
    sh('ip', ['netns', 'exec', B.ns, process.execPath, '-e', script]);
    assert.equal(A.exited(), false, 'the daemon is alive');
    const rssAfter = rssKb(pid);
    assert.ok(rssAfter - rssBefore < 32 * 1024, `RSS grew by ${rssAfter - rssBefore} kB`);
    assert.ok(ping(A, B.tunnel4), 'the tunnel still works');
  });

  test('roaming: the endpoint follows the peer to its new address', { timeout: 30_000 }, async () => {
    const vb = sh('ip', ['-n', B.ns, '-o', 'link', 'show', 'type', 'veth']).split(':')[1]!.trim().split('@')[0]!;
    // Delete first: removing a primary address also removes the secondaries of its subnet.
    sh('ip', ['-n', B.ns, 'addr', 'del', '10.99.0.2/24', 'dev', vb]);
    sh('ip', ['-n', B.ns, 'addr', 'add', '10.99.0.3/24', 'dev', vb]);
    // wireguard-go sends from its new address once it has something to send.
    await waitFor('our side to learn the new endpoint', () => {
      tryRun('ip', ['netns', 'exec', B.ns, 'ping', '-c', '1', '-W', '1', A.tunnel4]);
      return peerDump(A, B.publicKey).endpoint === `10.99.0.3:${B.port}`;
    }, 15_000);
    assert.ok(ping(A, B.tunnel4), 'traffic continues to the new endpoint');
    assert.match(A.wg('show', A.ifname, 'endpoints'), /10\.99\.0\.3:/);
  });

  test('the interface keeps working after it moves to another namespace (UDP stays behind)', { timeout: 30_000 }, () => {
    const nsC = createNetns(cleanup, 'wgtsc');
    sh('ip', ['-n', A.ns, 'link', 'set', A.ifname, 'netns', nsC]);
    sh('ip', ['-n', nsC, 'addr', 'add', `${A.tunnel4}/24`, 'dev', A.ifname]);
    sh('ip', ['-n', nsC, 'link', 'set', A.ifname, 'up']);
    assert.ok(ping({ ...A, ns: nsC }, B.tunnel4), 'ping from the new namespace through the tunnel');
    assert.equal(A.exited(), false);
    assert.equal(tryRun('wg', ['show', A.ifname]).status, 0, 'the UAPI socket still answers');
  });
});
