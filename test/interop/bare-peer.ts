// A WireGuard peer that is nothing but a UDP socket in the test process speaking the protocol
// with our own Noise code, so a test sees every datagram a daemon sends it: it records each
// (receiver index, counter) of the transport messages that arrive (a repeated pair is a reused
// nonce), opens those addressed to its sessions, and initiates handshakes when told to.
//
// The daemon under test (startBareDaemon) runs in this namespace so that its UDP socket shares
// loopback with these peers, and its interface is moved into a namespace the test creates: the
// tunnel addresses exist only there. (The daemon keeps working after such a move: UDP stays
// behind, see robustness.test.ts.)
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { Noise, Handshake, SessionKeys } from '../../src/handshake/noise.js';
import { CookieChecker, CookieGenerator } from '../../src/handshake/cookie.js';
import { TransportCrypto } from '../../src/workers/transport.js';
import { generateKeyPair } from '../../src/crypto/x25519.js';
import {
  INIT_LEN, RESP_LEN, RESP_RECEIVER, COOKIE_RECEIVER, MSG_RESPONSE, MSG_COOKIE_REPLY, MSG_DATA, DATA_HEADER_LEN, DATA_RECEIVER, DATA_COUNTER, messageType, readU32,
} from '../../src/handshake/messages.js';
import { Cleanup, createNetns, keyFile, sh, spawnDaemon, uniqueName, waitFor, wgKeyPair } from './harness.js';
import { oursCommand } from './topology.js';

export const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** Room for a sealed packet of any size we send (header, 1500-byte packet, padding, tag). */
const SEAL_ROOM = DATA_HEADER_LEN + 1500 + 16 + 16;

/** A daemon of ours whose UDP socket listens on this namespace's loopback and whose interface lives in `ns`. */
export interface BareDaemon {
  ifname: string;
  ns: string;
  port: number;
  pid: number;
  privateKey: string;
  publicKey: Uint8Array;
  /** The interface's tunnel address in `ns`. */
  address: string;
  exited: () => boolean;
  wg(...args: string[]): string;
}

/**
 * Starts our daemon with `args`, gives it a fresh key and a random listen port, moves its
 * interface into a new namespace with `address` (with prefix, e.g. 10.210.0.1/16) and sets it up.
 */
export async function startBareDaemon(cleanup: Cleanup, address: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<BareDaemon> {
  const ifname = uniqueName('wgbp');
  const d = await spawnDaemon(cleanup, 'wireguard-ts', oursCommand([...args, ifname]), ifname,
    { stdio: 'inherit', logLevel: process.env.TEST_LOG_LEVEL, env });
  const keys = wgKeyPair();
  sh('wg', ['set', ifname, 'private-key', keyFile(keys.privateKey), 'listen-port', '0']);
  const ns = createNetns(cleanup, 'wgtsbp');
  sh('ip', ['link', 'set', ifname, 'netns', ns]);
  sh('ip', ['-n', ns, 'addr', 'add', address, 'dev', ifname]);
  sh('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
  const port = Number(sh('wg', ['show', ifname, 'listen-port']).trim());
  assert.ok(port > 0, 'the daemon listens');
  return {
    ifname, ns, port, pid: d.proc.pid!, privateKey: keys.privateKey, publicKey: Uint8Array.from(Buffer.from(keys.publicKey, 'base64')),
    address: address.split('/')[0]!, exited: d.exited, wg: (...a) => sh('wg', a),
  };
}

/** What a peer saw of the transport messages sent to it. */
export interface Seen {
  /** Transport messages received (any receiver index). */
  data: number;
  /** A (receiver index, counter) pair seen before: the daemon reused a nonce. */
  duplicates: string[];
  /** Messages that named one of our sessions and opened. */
  opened: number;
  /** Messages that named one of our sessions and did not authenticate. */
  failed: number;
}

export class BarePeer {
  readonly noise = new Noise();
  readonly publicKey = new Uint8Array(32);
  readonly checker = new CookieChecker();
  readonly cookies: CookieGenerator;
  readonly sock = dgram.createSocket('udp4');
  readonly transport = new TransportCrypto();
  port = 0;
  /** Sessions by our local index; the newest one sends. */
  readonly sessions = new Map<number, SessionKeys>();
  current: SessionKeys | undefined;
  private sendCounter = 0;
  /** Initiations sent again (no answer in time, or a cookie reply). */
  retries = 0;
  cookieReplies = 0;
  readonly seen: Seen = { data: 0, duplicates: [], opened: 0, failed: 0 };
  private readonly pairs = new Set<string>();
  /** Handshake messages and cookie replies, oldest first. */
  readonly inbox: Uint8Array[] = [];
  /** Called with every inner packet that opened (after padding, as the daemon sent it) and the index it came on. */
  onPacket: ((packet: Uint8Array, index: number) => void) | undefined;
  /** Whether to open transport messages (recording their pairs costs nothing; opening costs a decryption each). */
  open = true;

  constructor(readonly daemonPublic: Uint8Array, cleanup: Cleanup) {
    const priv = new Uint8Array(32);
    generateKeyPair(priv, this.publicKey);
    this.noise.setPrivateKey(priv);
    this.checker.setPublicKey(this.publicKey);
    this.cookies = new CookieGenerator(daemonPublic);
    this.sock.on('message', (m) => this.receive(m));
    cleanup.add(() => void this.sock.close());
  }

  get publicKeyB64(): string {
    return b64(this.publicKey);
  }

  async bind(): Promise<number> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', r));
    this.port = this.sock.address().port;
    return this.port;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  private receive(m: Buffer): void {
    const type = messageType(m, 0, m.length);
    if (type !== MSG_DATA) {
      this.inbox.push(Uint8Array.from(m));
      return;
    }
    this.seen.data++;
    const index = readU32(m, DATA_RECEIVER);
    const pair = `${index}:${readU32(m, DATA_COUNTER + 4)}:${readU32(m, DATA_COUNTER)}`;
    if (this.pairs.has(pair)) this.seen.duplicates.push(pair);
    else this.pairs.add(pair);
    const s = this.sessions.get(index);
    if (s === undefined || !this.open) return;
    const n = this.transport.open(m, 0, m.length, s.receiveKey);
    if (n < 0) {
      this.seen.failed++;
      return;
    }
    this.seen.opened++;
    this.onPacket?.(m.subarray(DATA_HEADER_LEN, DATA_HEADER_LEN + n), index);
  }

  /** The oldest message of `type` in the inbox matching `match`, waiting up to `timeoutMs`. */
  async take(type: number, timeoutMs = 2000, match: (m: Uint8Array) => boolean = () => true, anyType = false): Promise<Uint8Array> {
    return waitFor(`a message of type ${type}`, () => {
      const i = this.inbox.findIndex((m) => (anyType || messageType(m, 0, m.length) === type) && match(m));
      return i >= 0 ? this.inbox.splice(i, 1)[0]! : undefined;
    }, timeoutMs);
  }

  send(msg: Uint8Array, port: number): Promise<void> {
    return new Promise((r, j) => this.sock.send(msg, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  }

  /** A fresh local index no session of ours uses. */
  private newIndex(): number {
    for (;;) {
      const i = randomBytes(4).readUInt32LE(0);
      if (i !== 0 && !this.sessions.has(i)) return i;
    }
  }

  /** Sends an initiation to the daemon; returns the handshake state and our local index. */
  async sendInitiation(port: number): Promise<{ hs: Handshake; index: number; init: Uint8Array }> {
    const hs = new Handshake(this.daemonPublic, 0);
    assert.ok(this.noise.precompute(hs));
    const index = this.newIndex();
    const init = new Uint8Array(INIT_LEN);
    assert.ok(this.noise.createInitiation(hs, index, Date.now(), init));
    this.cookies.addMacs(init, INIT_LEN, performance.now());
    await this.send(init, port);
    return { hs, index, init };
  }

  /** Finishes our handshake with the response that answers `index`; the session becomes current. */
  finish(hs: Handshake, index: number, resp: Uint8Array): SessionKeys {
    assert.equal(resp.length, RESP_LEN);
    assert.ok(this.checker.checkMac1(resp, RESP_LEN), 'mac1 of the response');
    const r = this.noise.consumeResponse(resp, (i) => (i === index ? hs : undefined));
    assert.ok(r.ok, `response consumed: ${JSON.stringify(r)}`);
    const s = new SessionKeys();
    assert.ok(this.noise.beginSession(hs, s));
    this.sessions.set(index, s);
    this.current = s;
    this.sendCounter = 0;
    return s;
  }

  /**
   * A complete handshake initiated by us, then a keepalive that confirms the session to the
   * daemon (it may send on it from then on). As a real peer does, a lost initiation or response
   * is retried (here after `retryMs`, not REKEY_TIMEOUT) and a cookie reply is consumed and
   * answered with a new initiation carrying mac2. Returns the time the handshake took, ms.
   */
  async handshake(port: number, timeoutMs = 3000, retryMs = 1000): Promise<number> {
    const t0 = performance.now();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { hs, index } = await this.sendInitiation(port);
      const answer = await this.take(MSG_RESPONSE, Math.min(retryMs, Math.max(1, deadline - Date.now())), (m) =>
        (messageType(m, 0, m.length) === MSG_RESPONSE && readU32(m, RESP_RECEIVER) === index)
        || (messageType(m, 0, m.length) === MSG_COOKIE_REPLY && readU32(m, COOKIE_RECEIVER) === index), true).catch(() => undefined);
      if (answer !== undefined && messageType(answer, 0, answer.length) === MSG_RESPONSE) {
        this.finish(hs, index, answer);
        break;
      }
      if (answer !== undefined) {
        assert.ok(this.cookies.consumeReply(answer, performance.now()), 'the cookie reply opens');
        this.cookieReplies++;
        // An initiation within 1/20 s of the last one is refused as a flood (kernel INITIATIONS_PER_SECOND).
        await new Promise((r) => setTimeout(r, 60));
      }
      if (Date.now() > deadline) throw new Error(`no handshake within ${timeoutMs} ms`);
      this.retries++;
    }
    const ms = performance.now() - t0;
    await this.send(this.seal(new Uint8Array(0)), port);
    return ms;
  }

  /**
   * One handshake attempt timed to the datagram (handshake() polls its inbox every 20 ms): an
   * initiation, then the response that answers it, waited for on the socket itself. Returns the
   * round trip in ms, or undefined when no response came within `timeoutMs` (nothing retried:
   * a probe of how fast the daemon answers, not of whether it eventually does).
   */
  async probeHandshake(port: number, timeoutMs = 2000): Promise<number | undefined> {
    let index = -1;
    let done: ((resp: Uint8Array | undefined) => void) | undefined;
    const got = new Promise<Uint8Array | undefined>((r) => (done = r));
    // Responses seen, in case one arrives before the send's callback told us our index.
    const responses: Uint8Array[] = [];
    const check = (): void => {
      const r = responses.find((m) => readU32(m, RESP_RECEIVER) === index);
      if (r !== undefined) done!(r);
    };
    const onMessage = (m: Buffer): void => {
      if (messageType(m, 0, m.length) !== MSG_RESPONSE) return;
      responses.push(Uint8Array.from(m));
      check();
    };
    this.sock.on('message', onMessage);
    const timer = setTimeout(() => done!(undefined), timeoutMs);
    try {
      const t0 = performance.now();
      const sent = await this.sendInitiation(port);
      index = sent.index;
      check();
      const resp = await got;
      const ms = performance.now() - t0;
      if (resp === undefined) return undefined;
      // Taken here: it must not linger in the inbox for a later take().
      const i = this.inbox.findIndex((m) => m.length === resp.length && Buffer.compare(m, resp) === 0);
      if (i >= 0) this.inbox.splice(i, 1);
      this.finish(sent.hs, sent.index, resp);
      return ms;
    } finally {
      clearTimeout(timer);
      this.sock.off('message', onMessage);
    }
  }

  /** Seals an inner packet (empty: a keepalive) on the current session. */
  seal(packet: Uint8Array): Uint8Array {
    const s = this.current;
    assert.ok(s, 'a session to send on');
    const buf = new Uint8Array(Math.max(SEAL_ROOM, DATA_HEADER_LEN + packet.length + 32));
    buf.set(packet, DATA_HEADER_LEN);
    const len = this.transport.seal(buf, 0, packet.length, 1420, s.remoteIndex, this.sendCounter++, 0, s.sendKey);
    return buf.subarray(0, len);
  }
}

/** A `wg setconf`/`syncconf` file for a bare daemon: its key and port, and these peers. */
export function bareConfig(d: BareDaemon, peers: { publicKey: string; allowedIps: string[]; endpoint?: string }[]): string {
  const lines = ['[Interface]', `PrivateKey = ${d.privateKey}`, `ListenPort = ${d.port}`, ''];
  for (const p of peers) {
    lines.push('[Peer]', `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
    lines.push('');
  }
  return lines.join('\n');
}
