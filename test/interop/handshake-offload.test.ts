// The handshake offload pool in a live daemon: with --offload-depth 0 every initiation that
// passes the cookie checks is answered through the pool, and 500 load-generator clients from
// 254 addresses still all complete their handshakes and get echoes back through their tunnels;
// the metrics endpoint counts what went through the pool. With the pool's threads made to hang
// or throw (WGTS_TEST_FAULT, for tests only), the daemon takes the pool down and every client
// still completes, answered on the main thread.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot } from './harness.js';
import { addLoadgenClients, createLoadgenStage, runLoadgen } from './topology.js';
import { scrape, total } from './scrape.js';
import { TEST_FAULT_ENV } from '../../src/handshake/prepare-batch.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const cleanup = new Cleanup();
after(() => cleanup.run());

const CLIENTS = 500;
const METRICS_PORT = 9587;

test(`with every initiation offloaded, ${CLIENTS} clients complete handshakes and pass data`, { skip, timeout: 60_000 }, async (t) => {
  ensureTools();
  const stage = await createLoadgenStage(cleanup, 'ours', 254, ['--offload-depth', '0', '--handshake-threads', '2', '--metrics', String(METRICS_PORT)]);
  const keys = addLoadgenClients(cleanup, stage, CLIENTS);
  const r = await runLoadgen(stage, keys, ['--source', stage.sources, '--rate', '500', '--initiations', String(CLIENTS), '--timeout', '2000',
    '--data-rate', '500', '--target', stage.serverTunnel, '--duration', '5']);
  t.diagnostic(`${r.handshakes} handshakes, latency p50/p99 ${r.latencyMs?.p50}/${r.latencyMs?.p99} ms, errors ${JSON.stringify(r.errors)}`);
  assert.equal(r.established, CLIENTS, `every client completed a handshake: ${JSON.stringify(r)}`);
  assert.equal(r.data.tunnelsWithReplies, CLIENTS, 'an echo reply came back through every tunnel');
  const body = scrape(stage.server, METRICS_PORT);
  const offloaded = total(body, 'wireguard_handshakes_offloaded_total', 'interface=');
  const completed = total(body, 'wireguard_handshakes_completed_total', 'interface=');
  t.diagnostic(`offloaded ${offloaded}, completed ${completed}`);
  assert.ok(offloaded >= CLIENTS, `every answered initiation went through the pool: ${offloaded}`);
  assert.ok(completed >= CLIENTS, `completed: ${completed}`);
  assert.equal(total(body, 'wireguard_handshakes_rejected_total', 'reason="queue"'), 0, 'the bounded queue never overflowed at this rate');
});

const FAULT_CLIENTS = 200;

for (const fault of ['pool-hang', 'pool-throw']) {
  test(`with the pool's threads made to fail (${TEST_FAULT_ENV}=${fault}), ${FAULT_CLIENTS} clients complete on the main thread`, { skip, timeout: 90_000 }, async (t) => {
    ensureTools();
    // The daemon (and its pool threads) inherit the fault; the load generator starts after it is gone.
    process.env[TEST_FAULT_ENV] = fault;
    let stage: Awaited<ReturnType<typeof createLoadgenStage>>;
    try {
      stage = await createLoadgenStage(cleanup, 'ours', 254, ['--offload-depth', '0', '--handshake-threads', '2', '--metrics', String(METRICS_PORT)]);
    } finally {
      delete process.env[TEST_FAULT_ENV];
    }
    const keys = addLoadgenClients(cleanup, stage, FAULT_CLIENTS);
    // Clients whose initiation went down with the pool retry after 2 s, then reach the main thread.
    const r = await runLoadgen(stage, keys, ['--source', stage.sources, '--rate', '200', '--initiations', String(FAULT_CLIENTS), '--timeout', '2000',
      '--duration', '10']);
    const body = scrape(stage.server, METRICS_PORT);
    const offloaded = total(body, 'wireguard_handshakes_offloaded_total', 'interface=');
    const lost = total(body, 'wireguard_handshakes_rejected_total', 'type="initiation",reason="state"');
    t.diagnostic(`${r.established} established, ${r.retransmits} retransmits, ${offloaded} offloaded before the pool went down, ${lost} lost with it`);
    assert.equal(r.established, FAULT_CLIENTS, `every client completed a handshake: ${JSON.stringify(r)}`);
    // A hung pool holds what it was given for 2 s before it is taken down: maybe every first initiation.
    assert.ok(offloaded > 0, 'the pool was used before it went down');
    assert.equal(lost, offloaded, 'every initiation handed to the failing pool was lost, and counted');
    assert.equal(stage.server.exited(), false);
  });
}
