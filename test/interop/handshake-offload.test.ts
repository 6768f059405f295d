// The handshake offload pool in a live daemon: with --offload-depth 0 every initiation that
// passes the cookie checks is answered through the pool, and 500 load-generator clients from
// 254 addresses still all complete their handshakes and get echoes back through their tunnels;
// the metrics endpoint counts what went through the pool.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot } from './harness.js';
import { addLoadgenClients, createLoadgenStage, runLoadgen } from './topology.js';
import { scrape, total } from './scrape.js';

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
