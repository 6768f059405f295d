// Conformance, first topology of the netns test that wireguard-go and the kernel module ship
// (written here from its description): both daemons run in one namespace, ns0, whose loopback
// carries their UDP; each interface is then moved into a namespace of its own (ns1, ns2), which
// sees only the tunnel. On it: byte counters after a flood ping; pings, iperf3 TCP and UDP, v4
// and v6 inside, over a v4 and a v6 outer network, at MTU 1420 and at a jumbo MTU; roaming to a
// new listen port and a new source address, checked on its first packet; the crypto-RP filter.
// Each pairing runs the scenarios in the script's order, one host state carried from each to
// the next, so a test that fails names the scenario.
import { describe, test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, createNetns, ensureTools, randomPublicKey, sh, waitFor } from './harness.js';
import { iperfReport, type Host } from './topology.js';
import {
  configurePeers, endpoints, floodPing, linkBytes, pairings, pingOnce, setPeer, skip, startScriptHost, udpListen, udpSend,
} from './conformance.js';

/** The script's jumbo MTU: the default plus 33,316 (34,816 - 1,500). */
const bigMtu = (defaultMtu: number): number => 34_816 - 1_500 + defaultMtu;
/**
 * Bounded runs instead of the script's 1 GB each: TCP sends 20 MiB, which must all be written
 * before the run is killed (a flow that stalls fails here; wireguard-go needs well under a second);
 * UDP sends for one second. iperf3's receiver does not count what is still in flight when the
 * sender stops, about a tenth of it.
 */
const TCP = { bytes: '20M', timeoutMs: 8_000 };
const UDP = { seconds: 1, timeoutMs: 8_000 };
const TCP_BYTES = 20 * 2 ** 20;
/**
 * UDP at an unlimited rate (-b 0, as the script) outruns any tunnel: the sender's TUN queue and
 * the receiver's socket drop most of it (wireguard-go against itself delivers 5-15%), so that run
 * only shows datagrams get through. A second run at a rate every pairing carries here must
 * deliver most of what was sent.
 */
const UDP_RATE = '50M';
const UDP_MIN_DELIVERED = 0.5;

for (const [impl1, impl2] of pairings()) {
  describe(`netns topology: ${impl1} as wg1, ${impl2} as wg2`, { skip }, () => {
    const cleanup = new Cleanup();
    let ns0: string;
    let w1: Host;
    let w2: Host;
    let defaultMtu: number;

    before(async () => {
      ensureTools();
      ns0 = createNetns(cleanup, 'wgcf0');
      const ns1 = createNetns(cleanup, 'wgcf1');
      const ns2 = createNetns(cleanup, 'wgcf2');
      w1 = await startScriptHost(cleanup, impl1, ns0, 1);
      w2 = await startScriptHost(cleanup, impl2, ns0, 2);
      for (const [w, ns] of [[w1, ns1], [w2, ns2]] as const) {
        sh('ip', ['-n', ns0, 'link', 'set', w.ifname, 'netns', ns]);
        w.ns = ns;
      }
      configurePeers(w1, w2);
      defaultMtu = mtuOf(w1);
    });
    after(() => cleanup.run());

    const mtuOf = (w: Host): number => (JSON.parse(sh('ip', ['-n', w.ns, '-j', 'link', 'show', w.ifname])) as { mtu: number }[])[0]!.mtu;
    const setMtu = (mtu: number): void => {
      for (const w of [w1, w2]) sh('ip', ['-n', w.ns, 'link', 'set', w.ifname, 'mtu', String(mtu)]);
    };
    const outerEndpoints = (outer: 4 | 6): void => {
      const host = outer === 4 ? '127.0.0.1' : '[::1]';
      setPeer(w1, w2, 'endpoint', `${host}:${w2.port}`);
      setPeer(w2, w1, 'endpoint', `${host}:${w1.port}`);
    };

    test('both interfaces moved out of ns0, where the daemons and their UDP sockets stay; a preshared key is set', () => {
      for (const w of [w1, w2]) {
        assert.equal(w.exited(), false, `${w.impl} is running`);
        assert.match(sh('ip', ['-n', w.ns, 'link', 'show', w.ifname]), /state (UP|UNKNOWN)/, `${w.ifname} is up in ${w.ns}`);
        assert.match(sh('ip', ['netns', 'exec', ns0, 'ss', '-uln']), new RegExp(`:${w.port}\\b`), `${w.impl} listens on ${w.port} in ns0`);
      }
      assert.equal(defaultMtu, 1420, 'the default MTU');
      const conf = sh('wg', ['showconf', w1.ifname]);
      assert.match(conf, /PresharedKey = /, 'the peer has a preshared key');
      assert.match(conf, /ListenPort = 10000/);
    });

    test('counters: after a 10-packet flood ping, wg2 received 840 to 2,500 bytes and sent at least 880', { timeout: 20_000 }, async () => {
      outerEndpoints(4);
      // The script's margin over the ten 84-byte requests is the kernel's own IPv6 traffic on the
      // interface after it comes up (router solicitations, MLD reports): let it leave first.
      await waitFor('wg2\'s first IPv6 packets', () => linkBytes(w2.ns, w2.ifname).tx > 0, 3000).catch(() => undefined);
      floodPing(w2.ns, w1.tunnel4);
      // Ten 84-byte replies; flood ping may stop waiting before the last one lands.
      await waitFor('ten replies counted', () => linkBytes(w2.ns, w2.ifname).rx >= 840, 2000).catch(() => undefined);
      const { rx, tx } = linkBytes(w2.ns, w2.ifname);
      assert.ok(rx >= 840 && rx < 2500, `rx_bytes ${rx}`);
      assert.ok(tx >= 880, `tx_bytes ${tx}`);
    });

    for (const outer of [4, 6] as const) {
      for (const jumbo of [false, true]) {
        const label = `v${outer} outer (${outer === 4 ? '127.0.0.1' : '[::1]'}), MTU ${jumbo ? 'big (34,736)' : '1420'}`;
        test(label, { timeout: 240_000 }, async (t) => {
          outerEndpoints(outer);
          setMtu(jumbo ? bigMtu(defaultMtu) : defaultMtu);
          try {
            await trafficTests(t, cleanup, w1, w2);
          } finally {
            setMtu(defaultMtu);
          }
        });
      }
    }

    test('roaming v4: wg1 moves to 127.212.121.99:9999; its first packet moves wg2\'s endpoint there', { timeout: 20_000 }, () => {
      sh('ip', ['-n', ns0, '-4', 'addr', 'del', '127.0.0.1/8', 'dev', 'lo']);
      sh('ip', ['-n', ns0, '-4', 'addr', 'add', '127.212.121.99/8', 'dev', 'lo']);
      sh('wg', ['set', w1.ifname, 'listen-port', '9999']);
      setPeer(w1, w2, 'endpoint', `127.0.0.1:${w2.port}`);
      pingOnce(w1.ns, w2.tunnel6);
      assert.equal(endpoints(w2), `${w1.publicKey}\t127.212.121.99:9999`);
    });

    test('roaming v6: wg1 moves to [::1]:9998; its first packet moves wg2\'s endpoint there', { timeout: 20_000 }, () => {
      sh('wg', ['set', w1.ifname, 'listen-port', '9998']);
      setPeer(w1, w2, 'endpoint', `[::1]:${w2.port}`);
      pingOnce(w1.ns, w2.tunnel4);
      assert.equal(endpoints(w2), `${w1.publicKey}\t[::1]:9998`);
    });

    test('crypto-RP filter: a packet from an address another peer owns is dropped, yet authenticates and roams', { timeout: 30_000 }, async () => {
      // Where the roaming test leaves wg1, set explicitly so this test stands when that one failed.
      setPeer(w2, w1, 'endpoint', '[::1]:9998');
      setPeer(w1, w2, 'allowed-ips', '192.168.241.0/24');
      const first = await udpListen(cleanup, w1.ns, 1111);
      udpSend(w2.ns, w1.tunnel4, 1111, 'X');
      assert.equal(await first.receivedWithin(1000), 'X', 'the datagram arrives while wg2\'s key owns 192.168.241.0/24');
      await first.close();

      const moreSpecific = randomPublicKey();
      setPeer(w1, { publicKey: moreSpecific }, 'allowed-ips', `${w2.tunnel4}/32`);
      sh('wg', ['set', w2.ifname, 'listen-port', '9997']);
      const second = await udpListen(cleanup, w1.ns, 1111);
      udpSend(w2.ns, w1.tunnel4, 1111, 'X');
      assert.equal(await second.receivedWithin(1000), '', 'nothing arrives once another peer owns 192.168.241.2/32');
      await second.close();
      setPeer(w1, { publicKey: moreSpecific }, 'remove');
      assert.equal(endpoints(w1), `${w2.publicKey}\t[::1]:9997`, 'the dropped packet still moved wg1\'s endpoint for wg2');
    });
  });
}

/**
 * The script's traffic tests over whatever endpoints and MTU are set: flood pings v4 and v6 both
 * ways, then iperf3 TCP and UDP (unlimited and fixed rate) over v4 and v6, each one subtest.
 */
async function trafficTests(t: TestContext, cleanup: Cleanup, w1: Host, w2: Host): Promise<void> {
  await t.test('ping v4 wg2 -> wg1', () => floodPing(w2.ns, w1.tunnel4));
  await t.test('ping v4 wg1 -> wg2', () => floodPing(w1.ns, w2.tunnel4));
  await t.test('ping v6 wg2 -> wg1', () => floodPing(w2.ns, w1.tunnel6));
  await t.test('ping v6 wg1 -> wg2', () => floodPing(w1.ns, w2.tunnel6));
  for (const [name, client, server, address] of [['v4 wg1 -> wg2', w1, w2, w2.tunnel4], ['v6 wg2 -> wg1', w2, w1, w1.tunnel6]] as const) {
    await t.test(`iperf3 TCP ${name}, 20 MiB`, async () => {
      const r = await iperfReport(cleanup, client, server, { ...TCP, address });
      assert.ok(r.receivedBytes >= TCP_BYTES / 2, `${r.receivedBytes} of ${TCP_BYTES} bytes arrived`);
    });
  }
  for (const [name, client, server, address] of [['v4 wg2 -> wg1', w2, w1, w1.tunnel4], ['v6 wg1 -> wg2', w1, w2, w2.tunnel6]] as const) {
    await t.test(`iperf3 UDP ${name}, -b 0`, async () => {
      const r = await iperfReport(cleanup, client, server, { ...UDP, address, udpRate: '0' });
      const { packets, lost } = r.udp!;
      assert.ok(packets > lost && r.receivedBytes > 0, delivered(packets, lost));
    });
    await t.test(`iperf3 UDP ${name}, -b ${UDP_RATE}`, async () => {
      const r = await iperfReport(cleanup, client, server, { ...UDP, address, udpRate: UDP_RATE });
      const { packets, lost } = r.udp!;
      assert.ok(packets > 0 && packets - lost >= packets * UDP_MIN_DELIVERED, delivered(packets, lost));
    });
  }
}

/** iperf3's receiver numbers datagrams: `packets` is the highest number it saw, so 0 means none arrived. */
function delivered(packets: number, lost: number): string {
  return packets === 0 ? 'no datagram arrived' : `${packets - lost} of ${packets} datagrams arrived`;
}
