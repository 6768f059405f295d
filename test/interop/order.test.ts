// Packet order within one flow: wireguard-ts must deliver a flow's packets in the order they were
// sent whatever its worker count, even when the crypto of a batch is spread over several
// workers (the kernel's parallel encryption with serial per-peer transmission). One iperf3 UDP
// flow numbers its datagrams; its receiver counts those that arrive after a higher-numbered one.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot } from './harness.js';
import { createPair, iperfReport, ping, type Impl } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';
/** Bounded in count; at 100 Mbit/s the flow lasts about 2 s. */
const DATAGRAMS = 20_000;
/** Fits the 1420-byte tunnel MTU over IPv4 or IPv6: one datagram, one transport message. */
const PAYLOAD = 1372;

describe('packet order within one UDP flow', { skip }, () => {
  for (const receiver of ['ours', 'wggo'] as Impl[]) {
    for (const workers of [1, 2]) {
      test(`ours -> ${receiver}, --workers ${workers}: ${DATAGRAMS} datagrams, none late`, { timeout: 30_000 }, async () => {
        const cleanup = new Cleanup();
        try {
          ensureTools();
          const { a, b } = await createPair(cleanup, { a: 'ours', b: receiver, oursArgs: ['--workers', String(workers)] });
          assert.ok(ping(a, b.tunnel4), 'tunnel up');
          const { udp } = await iperfReport(cleanup, a, b, { udpRate: '100M', length: PAYLOAD, packets: DATAGRAMS });
          assert.ok(udp !== undefined);
          const received = udp.packets - udp.lost;
          console.log(`ours -> ${receiver}, ${workers} worker(s): received ${received} of ${DATAGRAMS}, ${udp.outOfOrder} late`);
          assert.equal(udp.outOfOrder, 0, `${udp.outOfOrder} datagrams arrived after a higher-numbered one`);
          // Enough arrived for the order check to mean something; loss itself depends on how busy
          // the machine is (UDP has no flow control) and is what bench/udp.ts measures.
          assert.ok(received >= DATAGRAMS * 0.5, `received ${received} of ${DATAGRAMS}`);
        } finally {
          await cleanup.run();
        }
      });
    }
  }
});
