// The metrics endpoint of a live daemon: wireguard-ts (--metrics 9586, so on its default
// loopback address) paired with wireguard-go; after traffic, a scrape from inside the daemon's
// namespace must agree with `wg show dump` line for line, drop counters must move for packets
// no peer owns, and the endpoint must not answer on the veth or tunnel addresses.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot, waitFor } from './harness.js';
import { createPair, peerDump, ping, type Host } from './topology.js';
import { fetchIn, scrape, total } from './scrape.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const PORT = 9586;

describe('metrics: wireguard-ts with --metrics, paired with wireguard-go', { skip }, () => {
  const cleanup = new Cleanup();
  let A: Host;
  let B: Host;
  before(async () => {
    ensureTools();
    ({ a: A, b: B } = await createPair(cleanup, { a: 'ours', b: 'wggo', oursArgs: ['--metrics', String(PORT), '--workers', '2'] }));
  });
  after(() => cleanup.run());

  test('per-peer series equal `wg show dump` once traffic settles', { timeout: 30_000 }, async () => {
    assert.ok(ping(A, B.tunnel4), 'A -> B');
    assert.ok(ping(B, A.tunnel6), 'B -> A');
    // Pings are symmetric; 1000-byte datagrams to a closed port (answered by a shorter ICMP
    // error, if at all) make A's sent and received bytes differ, so a swap would show.
    for (let i = 0; i < 3; i++) A.exec('bash', ['-c', `head -c 1000 /dev/zero > /dev/udp/${B.tunnel4}/9`]);
    // Counters only grow: a scrape between two equal dumps must show exactly what they show.
    const { dump, body } = await waitFor('a scrape between two equal dumps', () => {
      const before = peerDump(A, B.publicKey);
      const body = scrape(A);
      const after = peerDump(A, B.publicKey);
      return JSON.stringify(before) === JSON.stringify(after) && { dump: after, body };
    }, 10_000);
    assert.ok(dump.rx > 0 && dump.tx > dump.rx && dump.latestHandshake > 0, JSON.stringify(dump));
    assert.equal(dump.allowedIps, `${B.tunnel4}/32,${B.tunnel6}/128`);
    const labels = `{interface="${A.ifname}",public_key="${B.publicKey}",allowed_ips="${dump.allowedIps}"}`;
    const lines = body.split('\n');
    for (const line of [
      `wireguard_sent_bytes_total${labels} ${dump.tx}`,
      `wireguard_received_bytes_total${labels} ${dump.rx}`,
      `wireguard_latest_handshake_seconds${labels} ${dump.latestHandshake}`,
    ]) {
      assert.ok(lines.includes(line), `scrape has ${line}\n${lines.filter((l) => l.includes(B.publicKey)).join('\n')}`);
    }
    assert.ok(lines.includes('# TYPE wireguard_sent_bytes_total counter'));
    assert.ok(lines.includes('# TYPE wireguard_latest_handshake_seconds gauge'));
    assert.equal(total(body, 'wireguard_peers', ''), 1);
    assert.ok(total(body, 'wireguard_handshakes_completed_total', '') >= 1);
    assert.equal(total(body, 'wireguard_under_load', ''), 0);
    // Staged packets and handshake messages leave from the main thread, so only part of the pings count here.
    assert.ok(total(body, 'wireguard_worker_packets_total', 'direction="rx"') >= 3, 'datagrams received');
    assert.ok(total(body, 'wireguard_worker_packets_total', 'direction="tx"') >= 3, 'data messages sent');
  });

  test('packets to an address no peer owns count as no_route drops', { timeout: 30_000 }, async () => {
    const drops = (): number => total(scrape(A), 'wireguard_packets_dropped_total', 'reason="no_route"');
    const before = drops();
    // 10.200.0.77 is on the tunnel's /24 but in no peer's allowed IPs: ping sends 3 and gets nothing.
    assert.equal(ping(A, '10.200.0.77'), false);
    await waitFor('three no_route drops', () => drops() >= before + 3, 5000);
  });

  test('an initiation with a bad mac1 counts as rejected for that reason', { timeout: 20_000 }, async () => {
    const mac1 = (): number => total(scrape(A), 'wireguard_handshakes_rejected_total', 'type="initiation",reason="mac1"');
    const before = mac1();
    // Type 1, three zero bytes, then 144 zero bytes: the size of an initiation, the MACs of none
    // (dd makes it one write, so one datagram).
    const initiation = `{ printf '\\x01\\x00\\x00\\x00'; head -c 144 /dev/zero; } | dd bs=148 count=1 iflag=fullblock status=none`;
    B.exec('bash', ['-c', `${initiation} > /dev/udp/${A.outer}/${A.port}`]);
    await waitFor('a mac1 rejection', () => mac1() === before + 1, 5000);
  });

  test('the endpoint listens on loopback only by default', { timeout: 20_000 }, () => {
    for (const addr of [A.outer, A.tunnel4]) {
      const r = fetchIn(B.ns, `http://${addr}:${PORT}/metrics`);
      assert.notEqual(r.status, 0, `reachable at ${addr}`);
      assert.match(r.out, /ECONNREFUSED/, `refused at ${addr}`);
    }
    // And it does answer where it listens, in the daemon's namespace.
    assert.equal(fetchIn(A.ns, `http://127.0.0.1:${PORT}/metrics`).status, 0);
  });
});
