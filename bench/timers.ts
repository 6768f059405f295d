// Peer timers at interface scale: 1,000,000 peers, one coarse tick every 100 ms.
// Run: node dist/bench/timers.js   (add --expose-gc for a steadier bytes-per-peer figure)
import { TimerAction, Timers } from '../src/device/timers.js';

const PEERS = 1_000_000;
const TICK_MS = 100;
const SIM_MS = 60_000;
const T0 = 1_000_000;

interface Row {
  readonly what: string;
  readonly figure: string;
}
const rows: Row[] = [];
const row = (what: string, figure: string): void => void rows.push({ what, figure });

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Tick every TICK_MS for SIM_MS of simulated time; `answer` plays the device. */
function runTicks(
  timers: Timers,
  start: number,
  answer: (peer: number, action: TimerAction, now: number) => void,
): { avgMs: number; maxMs: number; fired: number; visited: number; ticks: number } {
  let fired = 0;
  let visited = 0;
  let maxMs = 0;
  let total = 0;
  let ticks = 0;
  for (let now = start + TICK_MS; now <= start + SIM_MS; now += TICK_MS) {
    const t = performance.now();
    timers.tick(now, (peer, action) => {
      fired++;
      answer(peer, action, now);
    });
    const dt = performance.now() - t;
    total += dt;
    maxMs = Math.max(maxMs, dt);
    visited += timers.lastTickVisited;
    ticks++;
  }
  return { avgMs: total / ticks, maxMs, fired, visited, ticks };
}

function timeOps(label: string, n: number, fn: (i: number) => void): void {
  const t = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  const ns = ((performance.now() - t) * 1e6) / n;
  row(label, `${ns.toFixed(0)} ns/op`);
}

// ---- Setup: 1M peers ----
gc();
const before = process.memoryUsage().arrayBuffers;
let t = performance.now();
const timers = new Timers({ capacity: PEERS });
for (let p = 0; p < PEERS; p++) timers.init(p);
row('init 1M peers', `${(performance.now() - t).toFixed(0)} ms`);
gc();
row('typed-array memory per peer', `${((process.memoryUsage().arrayBuffers - before) / PEERS).toFixed(0)} B`);
timers.tick(T0, () => {}); // start the wheel's cursor

// ---- Busy: every peer has a 25 s persistent keepalive and a pending zeroing ----
t = performance.now();
for (let p = 0; p < PEERS; p++) {
  timers.setPersistentKeepalive(p, 25);
  timers.sessionDerived(p, T0);
  timers.anyAuthenticatedPacketTraversal(p, T0 + Math.random() * 25_000);
}
row('arm 3M timers (1M peers × 3 hooks)', `${(performance.now() - t).toFixed(0)} ms`);

const busy = runTicks(timers, T0, (peer, action, now) => {
  // Sending the keepalive is a traversal: it re-arms the persistent keepalive.
  if (action === TimerAction.SendPersistentKeepalive) timers.anyAuthenticatedPacketTraversal(peer, now);
});
row('busy tick (40k keepalives/s due), avg', `${busy.avgMs.toFixed(2)} ms`);
row('busy tick, max', `${busy.maxMs.toFixed(2)} ms`);
row('busy: actions per tick', `${(busy.fired / busy.ticks).toFixed(0)}`);
row('busy: nodes visited per tick', `${(busy.visited / busy.ticks).toFixed(0)}`);
row('busy: cost per action (tick + re-arm)', `${((busy.avgMs * 1e6 * busy.ticks) / busy.fired).toFixed(0)} ns`);

// ---- Hooks on the hot-ish path ----
let now = T0 + SIM_MS;
timeOps('traversal re-arm, later deadline (lazy)', PEERS, (p) => timers.anyAuthenticatedPacketTraversal(p, now + 1));
timeOps('dataReceived (arm keepalive)', PEERS, (p) => timers.dataReceived(p, now));
timeOps('anyAuthenticatedPacketSent (cancel)', PEERS, (p) => timers.anyAuthenticatedPacketSent(p));
timeOps('handshakeInitiated (arm with jitter)', PEERS, (p) => timers.handshakeInitiated(p, now));
timeOps('handshakeComplete (cancel)', PEERS, (p) => timers.handshakeComplete(p));

// ---- Quiet: 1M peers, all timers 540 s out except 1,000 keepalives ----
for (let p = 0; p < PEERS; p++) {
  timers.setPersistentKeepalive(p, 0);
  timers.stop(p);
  timers.init(p);
  timers.sessionDerived(p, now);
}
for (let p = 0; p < PEERS; p += 1000) timers.dataReceived(p, now + Math.random() * 10_000);
const quiet = runTicks(timers, now, () => {});
row('quiet tick (1M armed 540 s out, 1k due), avg', `${(quiet.avgMs * 1000).toFixed(1)} µs`);
row('quiet: nodes visited per tick', `${(quiet.visited / quiet.ticks).toFixed(1)}`);

// ---- For scale: what a naive per-peer scan would cost each tick ----
const deadlines = new Float64Array(PEERS * 5).fill(now + 540_000);
t = performance.now();
let due = 0;
const SCANS = 20;
for (let s = 0; s < SCANS; s++) for (let i = 0; i < deadlines.length; i++) if (deadlines[i]! <= now) due++;
row('naive scan of 5M deadlines (for comparison)', `${((performance.now() - t) / SCANS).toFixed(2)} ms (${due} due)`);

const width = Math.max(...rows.map((r) => r.what.length));
console.log(`${'timers, 1M peers'.padEnd(width)}  figure`);
for (const r of rows) console.log(`${r.what.padEnd(width)}  ${r.figure}`);
