// Peers that come and go under traffic (issue 12): a flood runs towards peer Y at full rate
// while, 50 times, Y is replaced by X (`wg set ... peer Y remove peer X ...`, `wg setconf`, or
// `wg syncconf`) and back. Y and X are bare peers in this process (bare-peer.ts), so the test
// sees every datagram: no (receiver index, counter) pair may arrive twice (a reused nonce), and
// every inner packet names by its destination address the peer it was meant for, so a packet
// for Y that X can decrypt is caught. In half of the rounds Y has a session and receives the
// flood; in the other half Y stays silent, so the flood waits staged for Y when Y is removed
// (the reproduced bug: those packets were sealed to X once X took Y's slot).
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, ensureTools, isRoot, sh, waitFor } from './harness.js';
import { BarePeer, bareConfig, startBareDaemon, type BareDaemon } from './bare-peer.js';
import { MSG_INITIATION } from '../../src/handshake/messages.js';
import { icmpEchoV4, parseIcmpV4 } from './packets.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const ROUNDS = 50;
const DAEMON_ADDR = '10.210.0.1';
const Y_ADDR = '10.210.1.1';
const X_ADDR = '10.210.2.1';
/** The flood's bound, whatever happens to the test: packets, then it exits. */
const FLOOD_MAX_PACKETS = 5_000_000;
const METHODS = ['set', 'setconf', 'syncconf'] as const;

/** The destination address of an IPv4 packet, or '' for anything else. */
const dst4 = (p: Uint8Array): string => (p.length >= 20 && p[0]! >> 4 === 4 ? Array.from(p.subarray(16, 20)).join('.') : '');

/** Starts a UDP flood from inside `ns` to `to`, as fast as one sender goes, until killed or FLOOD_MAX_PACKETS. */
function flood(cleanup: Cleanup, ns: string, to: string): void {
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    const payload = Buffer.from('meant for ${to} '.repeat(4));
    let sent = 0;
    function burst() {
      for (let i = 0; i < 128 && sent < ${FLOOD_MAX_PACKETS}; i++, sent++) s.send(payload, 9, '${to}');
      if (sent < ${FLOOD_MAX_PACKETS}) setImmediate(burst); else s.close();
    }
    burst();`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: 'ignore' });
  cleanup.add(() => void child.kill('SIGKILL'));
}

interface Counts { leakedToX: number; wrongAtY: number; pingsBack: number }

async function churn(xTakesYsAddress: boolean): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const d: BareDaemon = await startBareDaemon(cleanup, `${DAEMON_ADDR}/16`, ['--workers', '2']);
    const dir = mkdtempSync(join(tmpdir(), 'wgts-churn-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    const Y = new BarePeer(d.publicKey, cleanup);
    const X = new BarePeer(d.publicKey, cleanup);
    await Y.bind();
    await X.bind();
    const xAddr = xTakesYsAddress ? Y_ADDR : X_ADDR;
    const yPeer = { publicKey: Y.publicKeyB64, allowedIps: [`${Y_ADDR}/32`], endpoint: Y.endpoint };
    const xPeer = { publicKey: X.publicKeyB64, allowedIps: [`${xAddr}/32`], endpoint: X.endpoint };
    const counts: Counts = { leakedToX: 0, wrongAtY: 0, pingsBack: 0 };
    let pingSeq = 0;
    Y.onPacket = (p) => {
      if (dst4(p) !== Y_ADDR) counts.wrongAtY++;
    };
    X.onPacket = (p) => {
      const echo = parseIcmpV4(p);
      if (echo && echo.type === 0 && echo.dst === xAddr && echo.id === 0x7a7a && echo.seq === pingSeq) counts.pingsBack++;
      else if (!xTakesYsAddress && dst4(p) !== X_ADDR) counts.leakedToX++;
    };

    /** Replaces the peer `from` by `to` in one operation of kind `method`. */
    const replace = (method: (typeof METHODS)[number], from: BarePeer, to: typeof yPeer): void => {
      if (method === 'set') {
        d.wg('set', d.ifname, 'peer', from.publicKeyB64, 'remove', 'peer', to.publicKey, 'allowed-ips', to.allowedIps.join(','), 'endpoint', to.endpoint);
        return;
      }
      const file = join(dir, `${method}.conf`);
      writeFileSync(file, bareConfig(d, [to]), { mode: 0o600 });
      sh('wg', [method, d.ifname, file]);
    };

    replace('setconf', X, yPeer);
    flood(cleanup, d.ns, Y_ADDR);
    for (let round = 0; round < ROUNDS; round++) {
      const method = METHODS[round % METHODS.length]!;
      const silent = round % 2 === 1;
      try {
      if (silent) {
        // Y has no session: the flood is staged for Y, and Y is asked for a handshake it never answers.
        await Y.take(MSG_INITIATION, 3000);
      } else {
        await Y.handshake(d.port);
        const opened = Y.seen.opened;
        await waitFor(`the flood to reach Y in round ${round}`, () => Y.seen.opened >= opened + 20, 3000);
      }
      Y.inbox.length = 0;

      replace(method, Y, xPeer);
      await X.handshake(d.port);
      pingSeq = round + 1;
      const pings = counts.pingsBack;
      // Sent again every 100 ms: under the flood (which X receives too when it takes Y's
      // address) a datagram may be lost in a socket buffer.
      let lastPing = 0;
      await waitFor(`X's ping answered in round ${round}`, async () => {
        if (counts.pingsBack > pings) return true;
        if (Date.now() - lastPing >= 100) {
          lastPing = Date.now();
          await X.send(X.seal(icmpEchoV4(xAddr, DAEMON_ADDR, 0x7a7a, pingSeq, new TextEncoder().encode(`round ${round}`))), d.port);
        }
        return false;
      }, 3000);
      const endpoints = d.wg('show', d.ifname, 'endpoints');
      assert.match(endpoints, new RegExp(`^${X.publicKeyB64.replace(/[+/]/g, '\\$&')}\\t${X.endpoint}$`, 'm'), `X's endpoint is X's in round ${round}`);
      X.inbox.length = 0;

      replace(METHODS[(round + 1) % METHODS.length]!, X, yPeer);
      } catch (err) {
        const inbox = (p: BarePeer): number[] => p.inbox.map((m) => m[0]!);
        throw new Error(`round ${round} (${method}, Y ${silent ? "silent" : "in session"}; inboxes Y ${inbox(Y)} X ${inbox(X)}; seen X ${JSON.stringify(X.seen)} Y ${JSON.stringify(Y.seen)}; ${d.wg("show", d.ifname, "dump")}): ${(err as Error).message}`);
      }
    }
    assert.equal(d.exited(), false, 'the daemon stays up');
    assert.equal(sh('wg', ['show', d.ifname, 'peers']).trim(), Y.publicKeyB64, 'the daemon answers and holds Y');
    const summary = { y: Y.seen, x: X.seen, ...counts, retries: X.retries + Y.retries, cookieReplies: X.cookieReplies + Y.cookieReplies };
    console.log(`churn (${xTakesYsAddress ? 'X takes Y\'s address' : 'X elsewhere'}): ${JSON.stringify({ ...summary, y: { ...Y.seen, duplicates: Y.seen.duplicates.length }, x: { ...X.seen, duplicates: X.seen.duplicates.length } })}`);
    assert.deepEqual(Y.seen.duplicates, [], `no nonce reused towards Y: ${JSON.stringify(summary)}`);
    assert.deepEqual(X.seen.duplicates, [], `no nonce reused towards X: ${JSON.stringify(summary)}`);
    assert.equal(Y.seen.failed + X.seen.failed, 0, `every message on our sessions authenticates: ${JSON.stringify(summary)}`);
    assert.equal(counts.wrongAtY, 0, `Y decrypts only packets meant for Y: ${JSON.stringify(summary)}`);
    if (!xTakesYsAddress) assert.equal(counts.leakedToX, 0, `X never decrypts a packet meant for Y: ${JSON.stringify(summary)}`);
    assert.ok(Y.seen.opened >= (ROUNDS / 2) * 20, `the flood reached Y: ${JSON.stringify(summary)}`);
  } finally {
    await cleanup.run();
  }
}

describe('peers replaced 50 times under a flood', { skip }, () => {
  before(() => ensureTools());

  test('X with other allowed IPs never decrypts a packet meant for Y; no nonce is reused', { timeout: 60_000 }, () => churn(false));
  test('X taking Y\'s allowed IPs: no nonce is reused, the daemon stays up', { timeout: 60_000 }, () => churn(true));
});
