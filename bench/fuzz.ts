// Ten million random and mutated datagrams at full rate against a wireguard-ts daemon (issue
// 12): every message type at every size around its own, initiations and responses with a valid
// mac1 (they reach the Noise code), cookie replies, and transport messages on a real session's
// receiver index with bad counters (replays, beyond the window, near 2^64) and broken tags. The
// daemon's RSS is printed at every million; after the warm-up (the first million) it must grow
// by less than 5 %, and the daemon must still complete a handshake with wireguard-go at the end.
//
//   node dist/bench/fuzz.js [--quick] [--datagrams N]
//
// The sender is this file again (`--sender`), run inside the peer's namespace: it completes a
// handshake with the daemon as a configured peer first, so that its data messages name a live
// keypair, then sends, reporting each million on stdout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { Cleanup, statusKb, waitFor } from '../test/interop/harness.js';
import { createPair, ping, peerDump } from '../test/interop/topology.js';
import { flag, loadNow, numberArg, printTable, requireRoot } from './pairings.js';
import { Noise, Handshake, SessionKeys } from '../src/handshake/noise.js';
import { CookieGenerator } from '../src/handshake/cookie.js';
import { TransportCrypto } from '../src/workers/transport.js';
import { generateKeyPair } from '../src/crypto/x25519.js';
import {
  INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, DATA_HEADER_LEN, MSG_RESPONSE, RESP_RECEIVER, messageType, readU32, writeU32,
} from '../src/handshake/messages.js';

const MILLION = 1_000_000;
/** Datagrams the sender keeps in flight before waiting for the socket (bounded memory, full rate). */
const IN_FLIGHT = 2048;

// ---------------------------------------------------------------- sender (in the peer's namespace)

async function sender(target: string, port: number, daemonPublicB64: string, privateB64: string, total: number): Promise<void> {
  const daemonPublic = Uint8Array.from(Buffer.from(daemonPublicB64, 'base64'));
  const noise = new Noise();
  noise.setPrivateKey(Uint8Array.from(Buffer.from(privateB64, 'base64')));
  const cookies = new CookieGenerator(daemonPublic);
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, r));
  const inbox: Buffer[] = [];
  sock.on('message', (m) => inbox.push(m));

  // A real session, so that data messages name a live keypair.
  const hs = new Handshake(daemonPublic, 0);
  assert.ok(noise.precompute(hs));
  const index = 0x5eed5eed;
  const init = new Uint8Array(INIT_LEN);
  assert.ok(noise.createInitiation(hs, index, Date.now(), init));
  cookies.addMacs(init, INIT_LEN, performance.now());
  sock.send(init, port, target);
  const resp = await waitFor('the response', () => inbox.find((m) => messageType(m, 0, m.length) === MSG_RESPONSE && readU32(m, RESP_RECEIVER) === index), 5000);
  assert.ok(noise.consumeResponse(Uint8Array.from(resp), (i) => (i === index ? hs : undefined)).ok);
  const session = new SessionKeys();
  assert.ok(noise.beginSession(hs, session));
  const transport = new TransportCrypto();
  const sealed = (counter: number, hi: number, len: number): Uint8Array => {
    const buf = new Uint8Array(DATA_HEADER_LEN + len + 32);
    buf.set(randomBytes(len), DATA_HEADER_LEN);
    return buf.subarray(0, transport.seal(buf, 0, len, 1420, session.remoteIndex, counter, hi, session.sendKey));
  };
  // Confirm the session with a keepalive, then keep a few valid messages to replay.
  sock.send(sealed(0, 0, 0), port, target);
  const replays = Array.from({ length: 64 }, (_, i) => sealed(i + 1, 0, 40 + i));
  for (const m of replays.slice(0, 8)) sock.send(m, port, target);
  inbox.length = 0;
  sock.removeAllListeners('message');
  sock.on('message', () => undefined);

  // A pool of random bytes to cut datagrams from (fresh randomness per datagram would cost more than sending).
  const pool = randomBytes(1 << 22);
  let seed = 0x9e3779b9;
  const rnd = (n: number): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const junk = (len: number): Buffer => {
    const at = rnd(pool.length - len - 1);
    return Buffer.from(pool.subarray(at, at + len));
  };
  const around = (n: number): number => Math.max(0, n + rnd(7) - 3);
  const typed = (type: number, len: number): Buffer => {
    const b = junk(len);
    if (len >= 4) { b[0] = type; b[1] = b[2] = b[3] = 0; }
    return b;
  };
  const withMac1 = (type: number, len: number): Buffer => {
    const b = typed(type, len);
    cookies.addMacs(b, len, performance.now());
    return b;
  };
  const KINDS = 10;
  const make = (i: number): Uint8Array => {
    switch (i % KINDS) {
      case 0: return junk(rnd(1600)); // anything
      case 1: return typed(1 + rnd(4), around([INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN, 32][rnd(4)]!)); // each type, sizes around its own
      case 2: return withMac1(1, INIT_LEN); // reaches the Noise code (or a cookie reply under load)
      case 3: return withMac1(2, RESP_LEN);
      case 4: { // a cookie reply naming our session's index or a random one
        const b = typed(3, COOKIE_REPLY_LEN);
        if (rnd(2) === 0) writeU32(b, 4, index);
        return b;
      }
      case 5: { // our keypair, random counter, broken tag
        const b = typed(4, 32 + rnd(1400));
        writeU32(b, 4, session.remoteIndex);
        return b;
      }
      case 6: return replays[rnd(replays.length)]!; // replays (and a few first-time counters)
      case 7: { // valid tag, counters far ahead, near 2^64, or at the edge of the window
        const hi = [0, 1, 0xffffffff][rnd(3)]!;
        return sealed(rnd(2) === 0 ? 0xffffffff - rnd(4) : (1 << 20) + rnd(1 << 20), hi, rnd(64));
      }
      case 8: return typed(4, rnd(32)); // data shorter than a keepalive
      default: { // random receiver index with our keypair's slot bits, random counter
        const b = typed(4, 32 + rnd(200));
        writeU32(b, 4, (session.remoteIndex & 0x3fffff) | (rnd(1024) << 22));
        return b;
      }
    }
  };

  let sent = 0;
  let inFlight = 0;
  let nextReport = MILLION;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (inFlight < IN_FLIGHT && sent < total) {
        const m = make(sent);
        sent++;
        inFlight++;
        sock.send(m, port, target, () => {
          inFlight--;
          if (sent < total && inFlight < IN_FLIGHT / 2) setImmediate(pump);
          else if (sent >= total && inFlight === 0) resolve();
        });
        if (sent >= nextReport) {
          process.stdout.write(`sent ${sent} ${((performance.now() - t0) / 1000).toFixed(2)}\n`);
          nextReport += MILLION;
        }
      }
    };
    pump();
  });
  process.stdout.write(`done ${sent} ${((performance.now() - t0) / 1000).toFixed(2)}\n`);
  sock.close();
}

// ---------------------------------------------------------------- the bench

async function main(): Promise<void> {
  requireRoot();
  const total = numberArg('--datagrams', flag('--quick') ? MILLION : 10 * MILLION);
  const load = loadNow();
  const cleanup = new Cleanup();
  try {
    const { a: A, b: B } = await createPair(cleanup, { a: 'ours', b: 'wggo', oursArgs: ['--workers', '2'] });
    // The fuzzer's peer on A; B (wireguard-go) handshakes only at the end.
    const fPriv = new Uint8Array(32);
    const fPub = new Uint8Array(32);
    generateKeyPair(fPriv, fPub);
    A.wg('set', A.ifname, 'peer', Buffer.from(fPub).toString('base64'), 'allowed-ips', '10.200.0.50/32');
    const pid = A.proc.pid!;
    const rss = (): number => statusKb(pid, 'VmRSS') / 1024;
    const rows: string[][] = [['0', '0.0', rss().toFixed(1)]];
    const samples: number[] = [rss()];
    const child = spawn('ip', ['netns', 'exec', B.ns, process.execPath, fileURLToPath(import.meta.url), '--sender',
      A.outer, String(A.port), A.publicKey, Buffer.from(fPriv).toString('base64'), String(total)], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanup.add(() => void child.kill('SIGKILL'));
    let buf = '';
    let elapsed = 0;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [what, n, s] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        if (what === 'sent') {
          const r = rss();
          samples.push(r);
          rows.push([(Number(n) / MILLION).toFixed(0) + 'M', s!, r.toFixed(1)]);
          process.stderr.write(`${n} datagrams, ${s} s, RSS ${r.toFixed(1)} MiB\n`);
        } else if (what === 'done') elapsed = Number(s);
      }
    });
    const status = await new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
    if (status !== 0) throw new Error(`the sender failed (${status})`);
    assert.equal(A.exited(), false, 'the daemon survived');
    const alive = rss();
    const t0 = performance.now();
    const handshakeOk = await waitFor('a handshake with wireguard-go', () => ping(B, A.tunnel4, ['-c', '1']) && peerDump(A, B.publicKey).latestHandshake > 0, 10_000).catch(() => false);
    const handshakeMs = performance.now() - t0;
    const first = samples[1] ?? samples[0]!;
    const last = samples.at(-1)!;
    const growth = ((last - first) / first) * 100;
    printTable(`bench/fuzz: ${total.toLocaleString('en')} random and mutated datagrams against wireguard-ts (2 workers), ${(total / elapsed / 1000).toFixed(0)} k datagrams/s over ${elapsed.toFixed(1)} s`, load,
      ['datagrams', 'elapsed s', 'daemon RSS MiB'], rows);
    console.log(`\nRSS ${first.toFixed(1)} MiB after the first million, ${last.toFixed(1)} MiB at the end (${growth >= 0 ? '+' : ''}${growth.toFixed(2)} %), ${alive.toFixed(1)} MiB after; ` +
      `daemon alive; handshake + ping with wireguard-go afterwards: ${handshakeOk ? `${handshakeMs.toFixed(0)} ms` : 'FAILED'}`);
    if (!handshakeOk) throw new Error('no handshake after the fuzz');
    if (total >= 2 * MILLION && growth >= 5) throw new Error(`RSS grew ${growth.toFixed(2)} % from 1M to ${total / MILLION}M (bound 5 %)`);
  } finally {
    await cleanup.run();
  }
}

if (process.argv[2] === '--sender') {
  const [target, port, daemonPublic, priv, total] = process.argv.slice(3);
  sender(target!, Number(port), daemonPublic!, priv!, Number(total)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
