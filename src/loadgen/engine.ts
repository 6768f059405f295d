// The load generator's engine: many simulated WireGuard clients on one thread, as initiators
// against one server. Stages of a run:
//
//   1. sending phase (at most the duration): initiations leave at the offered rate, round-robin
//      over the clients; a response is checked (mac1), consumed and turned into a session, and
//      the client sends a keepalive on it at once, as a real initiator does, so the server
//      confirms the keypair. A cookie reply is decrypted, its cookie kept for the client
//      (macs.ts), and the same initiation goes out again with mac2 right away. Data
//      packets go round-robin over the established clients at the data rate.
//   2. drain (at most 2 s, or the timeout if shorter): nothing new is sent; answers still due
//      (responses, cookie replies, echo replies) are taken in.
//   3. whatever is still in flight then counts as unanswered.
//
// An initiation unanswered for the timeout (Rekey-Timeout, 5 s, by default) is retransmitted
// during the sending phase as a new initiation, as a real client does; the latency of the
// handshake that finally completes counts from the client's first attempt.
//
// A client may have several initiations in flight (each with its own Handshake and sender
// index), so the offered rate is kept even when the server is slow (an open-loop generator);
// one client still never initiates more often than every MIN_INITIATION_INTERVAL_MS, and its
// TAI64N timestamps always increase (initiation.ts nextStampMs).
//
// Initiations are written fresh (a new ephemeral key each, as a real client) or, with
// `ephemerals` > 0, from ephemerals precomputed in open() (initiation.ts): the cheap generator
// that leaves the server as the bottleneck. Either way nothing is allocated per initiation but
// what node:dgram allocates per send: an initiation in flight is a pooled Pending (message,
// Handshake, views), the macs come from table-backed ClientMacs, timeouts from a ring.
//
// Sockets: one connected node:dgram socket per source address. The kernel then delivers each
// reply to the socket of the address it was sent to, and a cookie (bound to source address
// and port) is naturally per socket. A dgram send costs ~10-15 µs of CPU, user and kernel:
// small beside a fresh initiation's X25519 work, but most of a precomputed one's (sendmmsg
// batches, as src/net/udp.ts does for the server, would be the next step).
import dgram from 'node:dgram';
import { Noise, Handshake, HandshakeState, SessionKeys } from '../handshake/noise.js';
import { CookieChecker } from '../handshake/cookie.js';
import {
  RESP_LEN, RESP_RECEIVER, COOKIE_RECEIVER, DATA_RECEIVER, DATA_HEADER_LEN, TAG_LEN,
  MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, MSG_DATA, messageType, readU32,
} from '../handshake/messages.js';
import { Initiation, PrecomputedInitiations, nextStampMs, writeFresh } from './initiation.js';
import { ClientMacs } from './macs.js';
import { TimeoutQueue } from './timeouts.js';
import { TransportCrypto, paddingFor } from '../workers/transport.js';
import { isEchoReply, writeEchoRequest, writeUdp } from './packets.js';
import { LatencyHistogram, countError, copyCounters, newCounters, processCpuSince, type Counters, type RunResult } from './stats.js';
import { type TrafficOptions, MAX_PACKET_LEN, MIN_INITIATION_INTERVAL_MS } from './options.js';
import type { ClientKey } from './keys.js';

/** A client re-initiates when its session is this old (RekeyAfterTime), as a real one does. */
const REKEY_AFTER_MS = 120_000;
/** The most cookie replies one initiation is resent after: more means the cookie never works. */
const MAX_COOKIE_ROUNDS = 3;
/** Longest stretch of sending before received messages get their turn on the event loop. */
const TICK_BUDGET_MS = 4;
/**
 * The longest the pacing loop sleeps: it wakes when the next initiation, data packet or timeout
 * is due, and at least this often. A wake-up costs tens of µs, so a 1 ms tick at a low rate
 * (or through a 2 s drain) would be most of the generator's CPU.
 */
const MAX_SLEEP_MS = 10;
const MAX_DRAIN_MS = 2000;
const SOCKET_BUFFER_BYTES = 4 << 20;
/** Inner UDP datagrams leave from this port + the client's number: one flow per client. */
const UDP_SOURCE_PORT_BASE = 20000;

export interface EngineOptions extends TrafficOptions {
  /** The server's IP address (not a name) and port. */
  serverAddress: string;
  serverPort: number;
  serverKey: Uint8Array;
  clients: readonly ClientKey[];
  /** Source addresses, one socket each; empty: one socket on the wildcard address. */
  sources: readonly string[];
  family: 4 | 6;
  durationMs: number;
}

class Session {
  readonly keys = new SessionKeys();
  counter = 0;
  constructor(readonly client: Client, readonly birthMs: number) {}
}

class Client {
  readonly noise = new Noise();
  /** Checks mac1 of responses, which is keyed by our own public key. */
  readonly checker = new CookieChecker();
  /**
   * Never sent: holds DH(client, server), computed once, and its verdict. Pooled handshakes are
   * shared by all clients, so each fresh initiation copies both into its own (writeFresh).
   */
  readonly staticStatic: Handshake;
  readonly staticStaticKey: Uint8Array;
  readonly tunnel: number;
  lastInitiationMs = -Infinity;
  /** The wall-clock time of the last timestamp sent: the next one must be later. */
  lastStampMs = -Infinity;
  /** Which precomputed ephemeral the next initiation uses (round-robin). */
  nextEphemeral = 0;
  /** The client's latest initiation: only it is worth resending after a cookie reply. */
  newest: Pending | undefined;
  pending = 0;
  current: Session | undefined;
  previous: Session | undefined;
  echoSeq = 0;
  answered = false;

  constructor(readonly id: number, key: ClientKey, serverKey: Uint8Array, readonly socket: dgram.Socket) {
    this.noise.setPrivateKey(key.privateKey);
    this.checker.setPublicKey(key.publicKey);
    this.staticStatic = new Handshake(serverKey, id);
    if (!this.noise.precompute(this.staticStatic)) throw new Error('the server key is a low-order point: no handshake can succeed');
    this.staticStaticKey = this.staticStatic.precomputedStaticStatic;
    this.tunnel = key.tunnel;
  }

  get echoId(): number {
    return this.id & 0xffff;
  }

  destroy(): void {
    this.noise.setPrivateKey(null);
    this.staticStatic.destroy();
    this.current?.keys.destroy();
    this.previous?.keys.destroy();
  }
}

/**
 * One initiation in flight. Pooled: made once, reused for initiation after initiation, so its
 * fields are set by `initiate`, and `generation` tells an old TimeoutQueue entry from a new one.
 */
class Pending {
  readonly init: Initiation;
  generation = 0;
  client!: Client;
  index = 0;
  sentMs = 0;
  /** When the client's first try of this handshake left (earlier than `sentMs` for a retransmit). */
  attemptMs = 0;
  cookieRounds = 0;
  done = true;

  constructor(serverKey: Uint8Array) {
    this.init = new Initiation(serverKey);
  }
}

type Phase = 'idle' | 'sending' | 'draining' | 'done';

export class Engine {
  private readonly counters: Counters = newCounters();
  private readonly latency = new LatencyHistogram();
  private readonly clients: Client[] = [];
  private readonly sockets: dgram.Socket[] = [];
  private readonly byIndex = new Map<number, Pending | Session>();
  private readonly timeouts = new TimeoutQueue<Pending>();
  private inFlight = 0;
  /** Pendings not in flight, for reuse. */
  private readonly free: Pending[] = [];
  private readonly macs: ClientMacs;
  /** Set when the options ask for precomputed ephemerals. */
  private readonly precomputed: PrecomputedInitiations | undefined;
  private readonly established: Client[] = [];
  private readonly transport = new TransportCrypto();
  private nextIndex = (Math.random() * 0x100000000) >>> 0;
  private initCursor = 0;
  private dataCursor = 0;
  /** Initiations sent by the rate schedule (rekeys and resends not included). */
  private scheduled = 0;
  private phase: Phase = 'idle';
  private startMs = 0;
  private startCpu: NodeJS.CpuUsage | undefined;
  private phaseEndMs = 0;
  private dataStartMs = -1;
  private lastInitiationMs = 0;
  private lastHandshakeMs = 0;
  private lastDataMs = 0;
  private finished: (() => void) | undefined;
  private readonly onSent = (err: Error | null): void => {
    if (err) countError(this.counters, `send:${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  };

  private constructor(private readonly o: EngineOptions) {
    this.macs = new ClientMacs(o.serverKey, o.clients.length);
    if (o.ephemerals > 0) this.precomputed = new PrecomputedInitiations(o.serverKey, o.clients.length, o.ephemerals);
  }

  /** Opens one socket per source address, connected to the server, and sets up the clients. */
  static async open(o: EngineOptions): Promise<Engine> {
    const e = new Engine(o);
    try {
      // More sockets than clients would only sit idle.
      for (const address of o.sources.length > 0 ? o.sources.slice(0, o.clients.length) : [undefined]) e.sockets.push(await e.openSocket(address));
      o.clients.forEach((key, i) => e.clients.push(new Client(i, key, o.serverKey, e.sockets[i % e.sockets.length]!)));
      // Before the timed phase: X25519 work, ~2 operations per ephemeral.
      for (const c of e.clients) {
        if (e.precomputed?.fill(c.id, c.noise, c.staticStaticKey) === false) throw new Error('the server key is a low-order point: no handshake can succeed');
      }
    } catch (err) {
      e.close();
      throw err;
    }
    return e;
  }

  private async openSocket(address: string | undefined): Promise<dgram.Socket> {
    const sock = dgram.createSocket({ type: this.o.family === 6 ? 'udp6' : 'udp4', recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind({ address, port: 0 }, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      sock.close();
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      const hint = code === 'EADDRNOTAVAIL' ? ' (it must be configured on an interface of this host)' : '';
      throw new Error(`cannot bind a UDP socket to ${address ?? 'the wildcard address'}: ${code}${hint}`);
    }
    // Connected: sends skip the per-datagram address lookup, and only the server's datagrams
    // arrive. ICMP errors (port unreachable...) then surface as socket errors: count them.
    await new Promise<void>((resolve) => sock.connect(this.o.serverPort, this.o.serverAddress, resolve));
    sock.on('error', (err: NodeJS.ErrnoException) => countError(this.counters, `socket:${err.code ?? 'error'}`));
    sock.on('message', (msg) => this.receive(msg));
    return sock;
  }

  /** Runs the sending phase and the drain; resolves when the run is over. */
  run(): Promise<RunResult> {
    if (this.phase !== 'idle') throw new Error('an engine runs once');
    this.phase = 'sending';
    this.startCpu = process.cpuUsage();
    this.startMs = performance.now();
    return new Promise<void>((resolve) => {
      this.finished = resolve;
      this.tick();
    }).then(() => this.result());
  }

  /** Ends the sending phase now (e.g. on SIGINT); the drain still happens. */
  stop(): void {
    if (this.phase === 'sending') this.endSending(performance.now());
  }

  snapshot(): Counters {
    return copyCounters(this.counters);
  }

  private result(): RunResult {
    const since = (ms: number): number => Math.max(0, ms - this.startMs);
    return {
      counters: this.snapshot(),
      latency: this.latency,
      elapsedMs: since(performance.now()),
      initiationWindowMs: since(this.lastInitiationMs),
      handshakeWindowMs: Math.max(since(this.lastInitiationMs), since(this.lastHandshakeMs)),
      dataStartMs: this.dataStartMs < 0 ? -1 : since(this.dataStartMs),
      // The first packet is due 1/rate after data starts, so n packets span n/rate.
      dataWindowMs: this.dataStartMs < 0 ? 0 : Math.max(0, this.lastDataMs - this.dataStartMs),
      threads: 1,
      clients: this.clients.length,
      sources: this.sockets.length,
      offeredRate: this.o.rate,
      established: this.established.length,
      tunnelsWithReplies: this.clients.reduce((n, c) => n + (c.answered ? 1 : 0), 0),
      ephemerals: this.o.ephemerals,
      ...processCpuSince(this.startCpu),
    };
  }

  close(): void {
    this.phase = 'done';
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    for (const c of this.clients) c.destroy();
    for (const entry of this.byIndex.values()) if (entry instanceof Pending) entry.init.destroy();
    for (const p of this.free) p.init.destroy();
    this.byIndex.clear();
    this.macs.destroy();
    this.precomputed?.destroy();
  }

  // ---- the pacing loop ----

  private tick(): void {
    if (this.phase === 'done') return;
    const now = performance.now();
    this.expire(now);
    let behind = false;
    if (this.phase === 'sending') {
      const t = now - this.startMs;
      if (t >= this.o.durationMs || this.sendingDone()) this.endSending(now);
      else behind = this.sendDue(now, t);
    }
    if (this.phase === 'draining') {
      const outstanding = this.inFlight > 0 || this.counters.echoReplies < this.counters.echoRequests;
      if (!outstanding || now - this.phaseEndMs >= Math.min(MAX_DRAIN_MS, this.o.timeoutMs)) {
        this.finish();
        return;
      }
    }
    if (behind) setImmediate(this.tickFn);
    else setTimeout(this.tickFn, this.sleepMs(now));
  }

  private readonly tickFn = (): void => this.tick();

  /** How long the pacing loop may sleep from `now`: until something is due, 1-MAX_SLEEP_MS. */
  private sleepMs(now: number): number {
    const o = this.o;
    let wake = Math.min(now + MAX_SLEEP_MS, this.timeouts.oldestMs() + o.timeoutMs);
    if (this.phase === 'sending') {
      if (this.scheduled < o.initiations) wake = Math.min(wake, this.startMs + ((this.scheduled + 1) * 1000) / o.rate);
      if (o.dataRate > 0 && this.dataStartMs >= 0 && this.counters.dataPackets < o.packets) {
        wake = Math.min(wake, this.dataStartMs + ((this.counters.dataPackets + 1) * 1000) / o.dataRate);
      }
    }
    return Math.max(1, Math.ceil(wake - now));
  }

  /** True when every bounded kind of work is complete and nothing waits for an answer. */
  private sendingDone(): boolean {
    const o = this.o;
    const initiationsDone = this.scheduled >= o.initiations;
    const dataDone = o.dataRate === 0 || this.counters.dataPackets >= o.packets;
    return initiationsDone && dataDone && this.inFlight === 0;
  }

  private endSending(now: number): void {
    this.phase = 'draining';
    this.phaseEndMs = now;
  }

  private finish(): void {
    this.phase = 'done';
    // What is still in flight after the drain was never answered.
    while (this.timeouts.length > 0) {
      const p = this.timeouts.shift();
      if (p !== undefined && !p.done) {
        countError(this.counters, 'unanswered');
        this.release(p);
      }
    }
    this.finished?.();
  }

  /** Sends what the schedules say is due by now, within the tick's budget; true if some is left. */
  private sendDue(now: number, t: number): boolean {
    const o = this.o;
    const budgetEnd = now + TICK_BUDGET_MS;
    let due = Math.min(o.initiations, Math.floor((o.rate * t) / 1000)) - this.scheduled;
    // A client that initiated less than MIN_INITIATION_INTERVAL_MS ago (a resend after a cookie
    // reply or a retransmit, or timer jitter) passes its turn to the next one: waiting for it
    // would hold up every other client, which under a storm of cookie replies kept the rate
    // sent far below the rate offered. A whole round of such clients ends the tick.
    let passed = 0;
    while (due > 0 && passed < this.clients.length && performance.now() < budgetEnd) {
      const client = this.clients[this.initCursor]!;
      this.initCursor = (this.initCursor + 1) % this.clients.length;
      if (now - client.lastInitiationMs < MIN_INITIATION_INTERVAL_MS) {
        passed++;
        continue;
      }
      this.initiate(client, performance.now());
      this.countInitiation(now);
      this.scheduled++;
      due--;
    }
    let dataDue = 0;
    if (o.dataRate > 0 && this.dataStartMs >= 0) {
      dataDue = Math.min(o.packets, Math.floor((o.dataRate * (now - this.dataStartMs)) / 1000)) - this.counters.dataPackets;
      while (dataDue > 0 && performance.now() < budgetEnd) {
        const client = this.established[this.dataCursor]!;
        this.dataCursor = (this.dataCursor + 1) % this.established.length;
        this.sendData(client, now);
        dataDue--;
      }
    }
    return (due > 0 && passed < this.clients.length) || dataDue > 0;
  }

  // ---- handshakes ----

  private allocateIndex(): number {
    while (this.byIndex.has(this.nextIndex)) this.nextIndex = (this.nextIndex + 1) >>> 0;
    const index = this.nextIndex;
    this.nextIndex = (this.nextIndex + 1) >>> 0;
    return index;
  }

  private initiate(client: Client, now: number, attemptMs = now): void {
    const p = this.free.pop() ?? new Pending(this.o.serverKey);
    const init = p.init;
    const index = this.allocateIndex();
    const stampMs = nextStampMs(client.lastStampMs, Date.now());
    if (this.precomputed !== undefined) {
      this.precomputed.write(init, client.id, client.nextEphemeral, index, stampMs);
      client.nextEphemeral = (client.nextEphemeral + 1) % this.precomputed.perClient;
    } else if (!writeFresh(client.noise, client.staticStatic, client.staticStaticKey, init, index, stampMs)) {
      countError(this.counters, 'initiation:create');
      this.free.push(p);
      return;
    }
    client.lastStampMs = stampMs;
    this.macs.add(init, client.id, now);
    p.generation++;
    p.client = client;
    p.index = index;
    p.sentMs = now;
    p.attemptMs = attemptMs;
    p.cookieRounds = 0;
    p.done = false;
    this.byIndex.set(index, p);
    this.timeouts.push(p, now);
    this.inFlight++;
    client.pending++;
    client.lastInitiationMs = now;
    client.newest = p;
    // Reused only after an answer or the timeout, long after node:dgram has let go of the bytes.
    client.socket.send(init.bytes, this.onSent);
  }

  /** A new handshake (not a retransmit): what the rate offers. */
  private countInitiation(now: number): void {
    this.counters.initiations++;
    this.lastInitiationMs = now;
  }

  /** Forgets an initiation that completed, timed out or failed; its index is free again. */
  private release(p: Pending): void {
    p.done = true;
    this.byIndex.delete(p.index);
    this.inFlight--;
    p.client.pending--;
    if (p.client.newest === p) p.client.newest = undefined;
    // A completed handshake was wiped by beginSession; one that failed or timed out holds secrets.
    if (p.init.hs.state !== HandshakeState.Zeroed) p.init.hs.clear();
    this.free.push(p);
  }

  private expire(now: number): void {
    const q = this.timeouts;
    while (now - q.oldestMs() >= this.o.timeoutMs) {
      const p = q.shift();
      if (p === undefined || p.done) continue;
      countError(this.counters, 'timeout');
      const c = p.client;
      const newest = p === c.newest;
      const attemptMs = p.attemptMs;
      this.release(p);
      if (this.phase === 'sending' && newest && now - c.lastInitiationMs >= MIN_INITIATION_INTERVAL_MS) {
        this.counters.retransmits++;
        this.initiate(c, now, attemptMs);
      }
    }
  }

  private pendingFor(index: number, what: string): Pending | undefined {
    const p = this.byIndex.get(index);
    if (p instanceof Pending) return p;
    // A late answer to an initiation that timed out, or one that is not for us.
    countError(this.counters, `${what}:unknown-index`);
    return undefined;
  }

  private onResponse(msg: Buffer, now: number): void {
    const p = this.pendingFor(readU32(msg, RESP_RECEIVER), 'response');
    if (p === undefined) return;
    const c = p.client;
    if (!c.checker.checkMac1(msg, RESP_LEN)) {
      countError(this.counters, 'response:mac1');
      return;
    }
    const hs = p.init.hs;
    const r = c.noise.consumeResponse(msg, (i) => (i === p.index ? hs : undefined));
    if (!r.ok) {
      countError(this.counters, `response:${r.reason}`);
      return;
    }
    const s = new Session(c, now);
    const attemptMs = p.attemptMs;
    const ok = c.noise.beginSession(hs, s.keys);
    this.release(p);
    if (!ok) {
      countError(this.counters, 'response:session');
      return;
    }
    this.counters.handshakes++;
    this.latency.record((now - attemptMs) * 1000);
    this.lastHandshakeMs = now;
    this.byIndex.set(s.keys.localIndex, s);
    if (c.previous !== undefined) {
      this.byIndex.delete(c.previous.keys.localIndex);
      c.previous.keys.destroy();
    }
    c.previous = c.current;
    c.current = s;
    if (c.previous === undefined) {
      this.established.push(c);
      if (this.dataStartMs < 0) this.dataStartMs = now;
    }
    this.seal(s, this.dataBuffer(0), 0);
  }

  private onCookieReply(msg: Buffer, now: number): void {
    const p = this.pendingFor(readU32(msg, COOKIE_RECEIVER), 'cookie');
    if (p === undefined) return;
    this.counters.cookieReplies++;
    const c = p.client;
    if (!this.macs.consumeReply(msg, p.init, c.id, now)) {
      countError(this.counters, 'cookie:decrypt');
      return;
    }
    if (p !== c.newest) {
      // A newer initiation left since: resending this one would only be a flood to the server
      // (or a replay once the newer one is consumed). The newer one gets its own answer.
      countError(this.counters, 'cookie:superseded');
      this.release(p);
      return;
    }
    if (++p.cookieRounds > MAX_COOKIE_ROUNDS) {
      countError(this.counters, 'cookie:rounds');
      return;
    }
    this.macs.add(p.init, c.id, now);
    this.counters.retries++;
    // The resend counts as the client's latest initiation for the server's flood rule.
    c.lastInitiationMs = now;
    c.socket.send(p.init.bytes, this.onSent);
  }

  // ---- data ----

  /**
   * A send buffer with room for a sealed inner packet of `len` bytes, which goes at
   * DATA_HEADER_LEN. One per packet: node:dgram may still hold it after send() returns.
   */
  private dataBuffer(len: number): Buffer {
    return Buffer.allocUnsafe(DATA_HEADER_LEN + len + paddingFor(len, MAX_PACKET_LEN) + TAG_LEN);
  }

  /** Seals the inner packet of `len` bytes (0: a keepalive) in `buf` on session `s` and sends it. */
  private seal(s: Session, buf: Buffer, len: number): void {
    const c = s.counter++;
    const n = this.transport.seal(buf, 0, len, MAX_PACKET_LEN, s.keys.remoteIndex, c >>> 0, Math.floor(c / 0x100000000), s.keys.sendKey);
    s.client.socket.send(buf.subarray(0, n), this.onSent);
  }

  private sendData(client: Client, now: number): void {
    const o = this.o;
    const s = client.current!;
    if (now - s.birthMs >= REKEY_AFTER_MS && client.pending === 0 && now - client.lastInitiationMs >= MIN_INITIATION_INTERVAL_MS) {
      this.initiate(client, now);
      this.countInitiation(now);
    }
    const buf = this.dataBuffer(o.size);
    if (o.proto === 'icmp') {
      writeEchoRequest(buf, DATA_HEADER_LEN, client.tunnel, o.target!, client.echoId, client.echoSeq++ & 0xffff, o.size);
      this.counters.echoRequests++;
    } else {
      writeUdp(buf, DATA_HEADER_LEN, client.tunnel, o.target!, UDP_SOURCE_PORT_BASE + (client.id % 40000), o.targetPort, o.size);
    }
    this.seal(s, buf, o.size);
    this.counters.dataPackets++;
    this.counters.dataBytes += o.size;
    this.lastDataMs = now;
  }

  private onData(msg: Buffer): void {
    const s = this.byIndex.get(readU32(msg, DATA_RECEIVER));
    if (!(s instanceof Session)) {
      countError(this.counters, 'data:unknown-index');
      return;
    }
    const n = this.transport.open(msg, 0, msg.length, s.keys.receiveKey);
    if (n < 0) {
      countError(this.counters, 'data:decrypt');
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += n;
    const c = s.client;
    if (this.o.proto === 'icmp' && isEchoReply(msg, DATA_HEADER_LEN, n, this.o.target!, c.tunnel, c.echoId)) {
      this.counters.echoReplies++;
      c.answered = true;
    }
  }

  private receive(msg: Buffer): void {
    const now = performance.now();
    switch (messageType(msg, 0, msg.length)) {
      case MSG_RESPONSE: return this.onResponse(msg, now);
      case MSG_COOKIE_REPLY: return this.onCookieReply(msg, now);
      case MSG_DATA: return this.onData(msg);
      // The server wants a handshake of its own (it has something to send and no session):
      // a simulated client only ever initiates.
      case MSG_INITIATION: return countError(this.counters, 'server-initiation');
      default: return countError(this.counters, 'malformed');
    }
  }
}
