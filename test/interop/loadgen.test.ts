// `wireguard-ts loadgen` against real servers in network namespaces (test/interop/topology.ts:
// createLoadgenStage): 1,000 clients from 254 source addresses complete their handshakes with
// wireguard-go and with wireguard-ts, and ICMP echoes come back through every tunnel, on one
// engine thread and on two whose reports merge into one, and with --precompute --ephemerals 1
// two handshakes per client from the same ephemeral (only the timestamp, which must grow, and
// the sender index differ): both servers accept them; then one
// source address floods the server with initiations while a legitimate client on another
// address keeps completing its handshake, cookie round included, in under a second.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot } from './harness.js';
import { addLoadgenClients, createLoadgenStage, runLoadgen, type Impl } from './topology.js';
import type { LoadgenReport } from '../../src/loadgen/stats.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const cleanup = new Cleanup();
after(() => cleanup.run());

const CLIENTS = 1000;

/**
 * One handshake per client at 500/s; with `reuse`, two per client at 250/s, both from the
 * client's one precomputed ephemeral (--precompute --ephemerals 1). Half the rate: a loaded
 * 2-vCPU machine leaves our server ~250 handshakes/s, and an open-loop generator above a
 * server's capacity only gets later and later answers, then retransmits.
 */
async function thousandHandshakes(impl: Impl, threads: number, t: { diagnostic: (s: string) => void }, reuse = false): Promise<void> {
  ensureTools();
  const stage = await createLoadgenStage(cleanup, impl, 254);
  const keys = addLoadgenClients(cleanup, stage, CLIENTS);
  const rounds = reuse ? 2 : 1;
  // A lost initiation is retransmitted after 2 s, as a client would after Rekey-Timeout; once
  // established, echoes go round-robin over the tunnels until the duration is over: every
  // tunnel carries several.
  const r = await runLoadgen(stage, keys, ['--source', stage.sources, '--rate', reuse ? '250' : '500', '--initiations', String(rounds * CLIENTS),
    '--timeout', '2000', '--data-rate', '1000', '--target', stage.serverTunnel, '--duration', reuse ? '10' : '8', '--threads', String(threads),
    ...(reuse ? ['--precompute', '--ephemerals', '1'] : [])]);
  t.diagnostic(`${impl}, ${threads} thread(s)${reuse ? ', one precomputed ephemeral per client' : ''}: ${summary(r)}`);
  // Each thread owns half the clients and half the sockets: the counts below are only reached
  // when every thread's share made it into the one report.
  assert.equal(r.threads, threads);
  assert.equal(r.sources, 254);
  assert.equal(r.ephemerals, reuse ? 1 : 0);
  assert.equal(r.initiations, rounds * CLIENTS);
  assert.equal(r.established, CLIENTS, `every client completed a handshake: ${JSON.stringify(r)}`);
  if (!reuse) assert.equal(r.handshakes, CLIENTS);
  // A server that refused a client's second initiation (its ephemeral reused, or a timestamp
  // taken for a replay) would answer the first round only: half. A slow one may leave a few
  // in flight when the run ends.
  else assert.ok(r.handshakes >= 0.95 * rounds * CLIENTS, `nearly every handshake of both rounds completed: ${JSON.stringify(r)}`);
  assert.equal(r.data.tunnelsWithReplies, CLIENTS, 'an echo reply came back through every tunnel');
  assert.ok(r.data.echoRequests >= 4000, `echoes sent: ${r.data.echoRequests}`);
  // Loss is what the loadgen is there to report; a machine this loaded still loses little.
  assert.ok(r.data.echoReplies >= 0.8 * r.data.echoRequests, `echo replies: ${r.data.echoReplies} of ${r.data.echoRequests}`);
  assert.ok(r.latencyMs !== null && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max, JSON.stringify(r.latencyMs));
}

function summary(r: LoadgenReport): string {
  const l = r.latencyMs;
  return `${r.handshakes} handshakes (${r.handshakesPerS}/s), latency p50/p99 ${l?.p50}/${l?.p99} ms, ${r.cookieReplies} cookie replies, ` +
    `${r.retransmits} retransmits, echo ${r.data.echoReplies}/${r.data.echoRequests}, errors ${JSON.stringify(r.errors)}, ` +
    `generator ${r.generator.usPerInitiation} µs/initiation`;
}

/**
 * One source address floods the server for `seconds` (1,000 clients, as many initiations as the
 * load generator can make) while a legitimate client on another address handshakes again and
 * again, each time a fresh `loadgen run`. Returns the legitimate client's runs and the flood's report.
 */
async function flood(impl: Impl, seconds: number): Promise<{ legit: LoadgenReport[]; flood: LoadgenReport }> {
  ensureTools();
  const stage = await createLoadgenStage(cleanup, impl, 2);
  const floodKeys = addLoadgenClients(cleanup, stage, CLIENTS);
  const legitKeys = addLoadgenClients(cleanup, stage, 1, '10.78.200.1/24');
  const flooding = runLoadgen(stage, floodKeys, ['--source', '10.99.1.1', '--rate', '30000', '--duration', String(seconds), '--timeout', '1000']);
  let floodOver = false;
  flooding.then(() => (floodOver = true), () => (floodOver = true));
  const legit: LoadgenReport[] = [];
  // The timeout equals the bound: a lost initiation would be retransmitted only after 1 s.
  while (!floodOver || legit.length === 0) {
    legit.push(await runLoadgen(stage, legitKeys, ['--source', '10.99.1.2', '--rate', '1', '--initiations', '1', '--timeout', '1000', '--duration', '3']));
  }
  return { legit, flood: await flooding };
}

test(`loadgen completes ${CLIENTS} handshakes with wireguard-go and echoes through every tunnel`, { skip, timeout: 60_000 }, (t) => thousandHandshakes('wggo', 1, t));

test(`loadgen completes ${CLIENTS} handshakes with wireguard-ts and echoes through every tunnel`, { skip, timeout: 60_000 }, (t) => thousandHandshakes('ours', 1, t));

test(`loadgen on 2 threads completes ${CLIENTS} handshakes with wireguard-go, one merged report`, { skip, timeout: 60_000 }, (t) => thousandHandshakes('wggo', 2, t));

test(`loadgen --precompute: wireguard-go accepts a second handshake from each of ${CLIENTS} clients with the same ephemeral`, { skip, timeout: 60_000 }, (t) => thousandHandshakes('wggo', 2, t, true));

test(`loadgen --precompute: wireguard-ts accepts a second handshake from each of ${CLIENTS} clients with the same ephemeral`, { skip, timeout: 60_000 }, (t) => thousandHandshakes('ours', 2, t, true));

test('during a flood from one address, a client on another completes its handshake in under 1 s (wireguard-ts)', { skip, timeout: 60_000 }, async (t) => {
  // Long enough for several legitimate tries: the server is under load only while its queue
  // is deep and for 1 s after, so not every try meets a cookie reply.
  const { legit, flood: f } = await flood('ours', 8);
  t.diagnostic(`flood: ${summary(f)}`);
  for (const r of legit) t.diagnostic(`legitimate client: ${summary(r)}`);
  // The server was under load: it answered the flood with cookie replies, then rate-limited the
  // flooding address (mac2 valid, 20 initiations/s) and dropped most of what it sent.
  assert.ok(f.cookieReplies > 0 && f.retries > 0, 'the flood got cookie replies and resent with mac2');
  assert.ok((f.errors.timeout ?? 0) > f.handshakes, 'most of the flood went unanswered');
  for (const r of legit) {
    assert.equal(r.handshakes, 1, `the legitimate client completed: ${summary(r)}`);
    assert.ok(r.latencyMs!.max < 1000, `in under 1 s: ${summary(r)}`);
  }
  assert.ok(legit.some((r) => r.cookieReplies > 0), 'at least one legitimate handshake met the server under load (a cookie reply) and still made it');
});

test('during a flood from one address, a client on another: what wireguard-go does (recorded)', { skip, timeout: 60_000 }, async (t) => {
  const { legit, flood: f } = await flood('wggo', 5);
  t.diagnostic(`flood: ${summary(f)}`);
  for (const r of legit) t.diagnostic(`legitimate client: ${summary(r)}`);
  // Recorded, not judged: on a 2-vCPU machine the load generator cannot always outrun
  // wireguard-go's multi-core handshake workers. The legitimate client must still get through.
  for (const r of legit) assert.equal(r.handshakes, 1, `the legitimate client completed: ${summary(r)}`);
});
