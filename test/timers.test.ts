// Peer timers: every transition of timers.c under a fake clock, the rekey decisions of
// send.c/receive.c, the wheel's cost (nodes visited, not time), and a differential run against
// a naive per-peer model of timers.c on seeded random events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  COOKIE_REFRESH_TIME, HANDSHAKE_INITIATION_RATE_MS, KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX_MS,
  ZERO_KEY_MATERIAL_TIME,
} from '../src/handshake/constants.js';
import {
  TimerAction,
  TimerKind,
  Timers,
  shouldRekeyOnReceive,
  shouldRekeyOnSend,
} from '../src/device/timers.js';
import { seededRandom } from './helpers.js';

const S = 1000;
const STEP = 100; // tick period of the fake clock, ms
const T0 = 1_000_000; // an arbitrary start

interface Fired { at: number; peer: number; action: TimerAction; attempt: number }

/** The hooks the tests call, shared with the naive model so one `device` drives either. */
type Hooks = Pick<Timers, 'init' | 'stop' | 'setPersistentKeepalive' | 'dataSent' | 'dataReceived' |
  'anyAuthenticatedPacketSent' | 'anyAuthenticatedPacketReceived' | 'anyAuthenticatedPacketTraversal' |
  'handshakeInitiated' | 'handshakeComplete' | 'sessionDerived'>;

type OnAction = (t: Hooks, now: number, peer: number, action: TimerAction) => void;

/** A fake clock driving `timers` with a tick every STEP ms, recording every action. */
class Clock {
  now = T0;
  readonly fired: Fired[] = [];
  constructor(
    readonly timers: Timers,
    private readonly onAction: OnAction = () => {},
  ) {}

  /** Advance to `until` (absolute ms), ticking every STEP. */
  runTo(until: number): Fired[] {
    const from = this.fired.length;
    while (this.now + STEP <= until) {
      this.now += STEP;
      this.timers.tick(this.now, (peer, action, attempt) => {
        this.fired.push({ at: this.now, peer, action, attempt });
        this.onAction(this.timers, this.now, peer, action);
      });
    }
    return this.fired.slice(from);
  }

  run(ms: number): Fired[] {
    return this.runTo(this.now + ms);
  }
}

/** What a real device does on an action: send, which reports the matching events. */
const device: OnAction = (t, now, peer, action) => {
  switch (action) {
    case TimerAction.RetryHandshake:
    case TimerAction.NewHandshake:
      t.anyAuthenticatedPacketTraversal(peer, now);
      t.anyAuthenticatedPacketSent(peer);
      t.handshakeInitiated(peer, now);
      break;
    case TimerAction.SendKeepalive:
    case TimerAction.SendPersistentKeepalive:
      t.anyAuthenticatedPacketTraversal(peer, now);
      t.anyAuthenticatedPacketSent(peer);
      break;
  }
};

function newTimers(random: () => number = () => 0.5, peers = 4): Timers {
  const t = new Timers({ random, capacity: peers });
  for (let p = 0; p < peers; p++) t.init(p);
  return t;
}

function actions(fired: readonly Fired[]): TimerAction[] {
  return fired.map((f) => f.action);
}

test('constants are the protocol values', () => {
  assert.equal(REKEY_AFTER_MESSAGES, 2 ** 60);
  assert.equal(REJECT_AFTER_MESSAGES, 2n ** 64n - 2n ** 13n - 1n);
  const seconds = [REKEY_AFTER_TIME, REJECT_AFTER_TIME, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, KEEPALIVE_TIMEOUT];
  assert.deepEqual(seconds, [120, 180, 90, 5, 10]);
  assert.deepEqual([COOKIE_REFRESH_TIME, MAX_TIMER_HANDSHAKES, ZERO_KEY_MATERIAL_TIME], [120, 18, 540]);
  assert.deepEqual([REKEY_TIMEOUT_JITTER_MAX_MS, HANDSHAKE_INITIATION_RATE_MS], [333, 20]);
});

test('retransmit: REKEY_TIMEOUT plus jitter in [0, 333) ms', () => {
  let r = 0;
  const t = newTimers(() => r);
  t.handshakeInitiated(0, T0);
  assert.equal(t.deadlineOf(0, TimerKind.RetransmitHandshake), T0 + 5000);
  r = 0.999999;
  t.handshakeInitiated(0, T0);
  const d = t.deadlineOf(0, TimerKind.RetransmitHandshake);
  assert.ok(d >= T0 + 5332 && d < T0 + 5333, `deadline ${d - T0}`);
  // Fires on the first tick at or after the deadline, not before.
  const clock = new Clock(t);
  assert.deepEqual(clock.runTo(T0 + 5300), []);
  assert.deepEqual(clock.run(STEP), [{ at: T0 + 5400, peer: 0, action: TimerAction.RetryHandshake, attempt: 1 }]);
});

test('retransmit: 19 retries, then give up, then zero the keys 540 s later', () => {
  const random = seededRandom(1);
  const t = newTimers(random);
  const clock = new Clock(t, device);
  t.handshakeInitiated(0, T0);
  const fired = clock.run(200 * S);
  const retries = fired.filter((f) => f.action === TimerAction.RetryHandshake);
  // timers.c retries while attempts <= MAX_TIMER_HANDSHAKES: 19 retries, 20 initiations in all.
  assert.deepEqual(retries.map((f) => f.attempt), Array.from({ length: 19 }, (_, i) => i + 1));
  let last = T0;
  for (const f of retries) {
    const gap = f.at - last;
    assert.ok(gap >= 5000 && gap < 5000 + 333 + STEP, `retry ${f.attempt} after ${gap} ms`);
    last = f.at;
  }
  const giveUp = fired.filter((f) => f.action === TimerAction.GiveUp);
  assert.equal(giveUp.length, 1);
  const g = giveUp[0]!.at - last;
  assert.ok(g >= 5000 && g < 5000 + 333 + STEP);
  assert.equal(t.isPending(0, TimerKind.RetransmitHandshake), false);
  assert.equal(t.deadlineOf(0, TimerKind.ZeroKeyMaterial), giveUp[0]!.at + 540 * S);

  const later = clock.runTo(giveUp[0]!.at + 540 * S);
  assert.deepEqual(actions(later), [TimerAction.ZeroKeys]);
  assert.equal(later[0]!.at, giveUp[0]!.at + 540 * S);
});

test('giving up cancels a pending keepalive', () => {
  // Retries re-arm without sending anything else, so the keepalive stays pending until then.
  const t = newTimers();
  const clock = new Clock(t, (timers, now, peer, action) => {
    if (action === TimerAction.RetryHandshake) timers.handshakeInitiated(peer, now);
  });
  t.handshakeInitiated(0, T0);
  while (t.handshakeAttempts(0) <= MAX_TIMER_HANDSHAKES) clock.run(STEP);
  t.dataReceived(0, clock.now); // due in 10 s; the give-up comes within 5.333 s
  const fired = clock.run(30 * S);
  assert.deepEqual(actions(fired), [TimerAction.GiveUp]);
  assert.equal(t.isPending(0, TimerKind.SendKeepalive), false);
});

test('giving up does not move a zeroing that is already scheduled', () => {
  const t = newTimers();
  const clock = new Clock(t, device);
  t.sessionDerived(0, T0);
  t.handshakeInitiated(0, T0 + 10 * S);
  const fired = clock.run(600 * S);
  const giveUp = fired.find((f) => f.action === TimerAction.GiveUp)!;
  assert.ok(giveUp.at < T0 + 540 * S);
  const zero = fired.filter((f) => f.action === TimerAction.ZeroKeys);
  assert.deepEqual(zero.map((f) => f.at), [T0 + 540 * S]);
});

test('handshake complete stops retransmission and resets the count; a new request resets it too', () => {
  const t = newTimers();
  const clock = new Clock(t, device);
  t.handshakeInitiated(0, T0);
  clock.run(12 * S);
  assert.equal(t.handshakeAttempts(0), 2);
  t.handshakeComplete(0);
  assert.equal(t.handshakeAttempts(0), 0);
  assert.equal(t.isPending(0, TimerKind.RetransmitHandshake), false);
  assert.deepEqual(clock.run(60 * S), []);

  t.handshakeInitiated(0, clock.now);
  clock.run(6 * S);
  assert.equal(t.handshakeAttempts(0), 1);
  t.handshakeRequested(0);
  assert.equal(t.handshakeAttempts(0), 0);
});

test('keepalive: 10 s after data received, unless we sent something meanwhile', () => {
  const t = newTimers();
  const clock = new Clock(t);
  t.dataReceived(0, T0);
  assert.deepEqual(clock.run(9.9 * S), []);
  assert.deepEqual(clock.run(STEP), [{ at: T0 + 10 * S, peer: 0, action: TimerAction.SendKeepalive, attempt: 0 }]);

  t.dataReceived(1, clock.now);
  clock.run(3 * S);
  t.anyAuthenticatedPacketSent(1);
  assert.deepEqual(clock.run(30 * S), []);
});

test('keepalive: data received while one is pending asks for another one after it', () => {
  const t = newTimers();
  const clock = new Clock(t);
  t.dataReceived(0, T0);
  t.dataReceived(0, T0 + 2 * S); // does not push the first one, sets need_another_keepalive
  const fired = clock.run(40 * S);
  assert.deepEqual(actions(fired), [TimerAction.SendKeepalive, TimerAction.SendKeepalive]);
  assert.deepEqual(fired.map((f) => f.at - T0), [10 * S, 20 * S]);
});

test('new handshake: after data sent with no reply for 15 s + jitter; a received packet cancels it', () => {
  const t = newTimers(() => 0.5);
  const clock = new Clock(t);
  t.dataSent(0, T0);
  t.dataSent(0, T0 + 5 * S); // already pending: not pushed later
  assert.equal(t.deadlineOf(0, TimerKind.NewHandshake), T0 + 15 * S + 166.5);
  t.handshakeInitiated(0, T0 - 6 * S);
  t.tick(T0, () => {}); // that retransmit is due: attempt 1
  assert.equal(t.handshakeAttempts(0), 1);
  const fired = clock.run(16 * S);
  assert.deepEqual(fired, [{ at: T0 + 15.2 * S, peer: 0, action: TimerAction.NewHandshake, attempt: 0 }]);
  // timers.c queues that initiation as a first try, so the retry count starts over.
  assert.equal(t.handshakeAttempts(0), 0);

  t.dataSent(1, clock.now);
  clock.run(7 * S);
  t.anyAuthenticatedPacketReceived(1);
  assert.deepEqual(clock.run(30 * S), []);
});

test('zero key material: 540 s after the session; a new session reschedules it', () => {
  const t = newTimers();
  const clock = new Clock(t);
  t.sessionDerived(0, T0);
  t.sessionDerived(1, T0);
  clock.run(100 * S);
  t.sessionDerived(0, clock.now); // later: lazily moved
  assert.equal(t.deadlineOf(0, TimerKind.ZeroKeyMaterial), T0 + 640 * S);
  const fired = clock.run(700 * S);
  assert.deepEqual(actions(fired), [TimerAction.ZeroKeys, TimerAction.ZeroKeys]);
  assert.deepEqual(fired.map((f) => [f.peer, f.at - T0]), [[1, 540 * S], [0, 640 * S]]);
  // A deadline moved earlier takes effect too (mod_timer sets, it does not only extend).
  const start = clock.now;
  t.sessionDerived(2, start + 100 * S);
  t.sessionDerived(2, start);
  const again = clock.run(600 * S);
  assert.deepEqual(again.map((f) => [f.peer, f.at - start]), [[2, 540 * S]]);
});

test('persistent keepalive: armed by traversals, re-armed by its own sending, off at 0', () => {
  const t = newTimers();
  const clock = new Clock(t, device);
  assert.equal(t.setPersistentKeepalive(0, 25), true); // turned on: send one now
  assert.equal(t.setPersistentKeepalive(0, 25), false);
  assert.equal(t.persistentKeepalive(0), 25);
  t.anyAuthenticatedPacketTraversal(1, T0); // interval 0: nothing armed
  assert.equal(t.isPending(1, TimerKind.PersistentKeepalive), false);

  t.anyAuthenticatedPacketTraversal(0, T0);
  clock.run(10 * S);
  t.anyAuthenticatedPacketTraversal(0, clock.now); // traffic pushes it later
  const fired = clock.run(100 * S);
  assert.deepEqual(actions(fired), Array(4).fill(TimerAction.SendPersistentKeepalive));
  assert.deepEqual(fired.map((f) => f.at - T0), [35 * S, 60 * S, 85 * S, 110 * S]);
  assert.equal(t.setPersistentKeepalive(0, 0), false);
  assert.equal(t.isPending(0, TimerKind.PersistentKeepalive), true); // expires without action
  assert.deepEqual(clock.run(100 * S), []);
  assert.equal(t.isPending(0, TimerKind.PersistentKeepalive), false);
  assert.equal(t.setPersistentKeepalive(0, 1), true);
  assert.throws(() => t.setPersistentKeepalive(0, 65536), RangeError);
});

test('stop removes every pending timer; hooks do nothing until init', () => {
  const t = newTimers();
  const clock = new Clock(t);
  t.setPersistentKeepalive(0, 20);
  t.handshakeInitiated(0, T0);
  t.dataReceived(0, T0);
  t.dataSent(0, T0);
  t.sessionDerived(0, T0);
  t.anyAuthenticatedPacketTraversal(0, T0);
  t.dataReceived(1, T0);
  for (const kind of Object.values(TimerKind)) assert.equal(t.isPending(0, kind), true);
  t.stop(0);
  for (const kind of Object.values(TimerKind)) assert.equal(t.isPending(0, kind), false);
  t.dataReceived(0, T0);
  t.handshakeInitiated(0, T0);
  assert.equal(t.isPending(0, TimerKind.SendKeepalive), false);
  const fired = clock.run(600 * S);
  assert.deepEqual(fired.map((f) => [f.peer, f.action]), [[1, TimerAction.SendKeepalive]]);
  t.init(0);
  assert.equal(t.persistentKeepalive(0), 0);
  t.dataReceived(0, clock.now);
  assert.deepEqual(actions(clock.run(10 * S)), [TimerAction.SendKeepalive]);
});

test('an action may cancel another timer due in the same tick, which then does not fire', () => {
  const t = newTimers();
  const order: number[] = [];
  const clock = new Clock(t, (timers, _now, peer) => {
    order.push(peer);
    timers.stop(peer === 0 ? 1 : 0);
  });
  t.dataReceived(0, T0);
  t.dataReceived(1, T0);
  const fired = clock.run(11 * S);
  assert.equal(fired.length, 1);
  assert.deepEqual(order.length, 1);
});

test('an action may add peers (growing the arrays) during a tick', () => {
  const t = new Timers({ capacity: 1, random: () => 0.5 });
  t.init(0);
  const clock = new Clock(t, (timers, now, peer, action) => {
    if (peer === 0 && action === TimerAction.SendKeepalive) {
      timers.init(5000);
      timers.dataReceived(5000, now);
    }
  });
  t.dataReceived(0, T0);
  t.dataSent(0, T0);
  const fired = clock.run(30 * S);
  const { SendKeepalive, NewHandshake } = TimerAction;
  assert.deepEqual(fired.map((f) => [f.peer, f.action]), [[0, SendKeepalive], [0, NewHandshake], [5000, SendKeepalive]]);
  assert.deepEqual(fired.map((f) => f.at - T0), [10 * S, 15.2 * S, 20 * S]);
  assert.ok(t.capacity >= 5001);
});

test('a tick after a long gap fires everything that fell due', () => {
  const t = newTimers();
  t.dataReceived(0, T0);
  t.sessionDerived(1, T0);
  t.setPersistentKeepalive(2, 3600);
  t.anyAuthenticatedPacketTraversal(2, T0);
  const fired: [number, TimerAction][] = [];
  t.tick(T0 + 2 * 3600 * S, (peer, action) => fired.push([peer, action]));
  const { SendKeepalive, ZeroKeys, SendPersistentKeepalive } = TimerAction;
  assert.deepEqual(fired.sort(), [[0, SendKeepalive], [1, ZeroKeys], [2, SendPersistentKeepalive]]);
  assert.ok(t.lastTickBuckets <= 8192);
});

test('a clock that steps back neither fires early nor loses timers', () => {
  const t = newTimers();
  const fired: number[] = [];
  const record = (peer: number): void => void fired.push(peer);
  t.tick(T0 + 100 * S, record);
  t.dataReceived(0, T0 + 95 * S); // due at 105 s
  t.dataReceived(1, T0); // a stale event: due at 10 s, before the last tick
  t.tick(T0 + 50 * S, record); // earlier than the last tick
  assert.deepEqual(fired, [1]);
  t.tick(T0 + 104.9 * S, record);
  assert.deepEqual(fired, [1]);
  t.tick(T0 + 105 * S, record);
  assert.deepEqual(fired, [1, 0]);
});

test('tick cost follows armed timers, not peers: 100k peers, few armed', () => {
  const peers = 100_000;
  const t = new Timers({ capacity: peers });
  for (let p = 0; p < peers; p++) t.init(p);
  t.tick(T0, () => {});
  for (let p = 0; p < peers; p += 10_000) t.dataReceived(p, T0);
  let visited = 0;
  let fired = 0;
  for (let now = T0 + STEP; now <= T0 + 20 * S; now += STEP) {
    t.tick(now, () => fired++);
    visited += t.lastTickVisited;
    assert.ok(t.lastTickBuckets <= 2);
  }
  assert.equal(fired, 10);
  assert.equal(visited, 10);

  // All 100k armed 540 s out: ticks before then visit none of them.
  for (let p = 0; p < peers; p++) t.sessionDerived(p, T0 + 20 * S);
  visited = 0;
  for (let now = T0 + 20 * S + STEP; now <= T0 + 60 * S; now += STEP) {
    t.tick(now, () => fired++);
    visited += t.lastTickVisited;
  }
  assert.equal(visited, 0);
  assert.equal(fired, 10);
});

test('the wheel fires every timer by one tick after its deadline (random deadlines)', () => {
  const random = seededRandom(7);
  const t = new Timers({ capacity: 2000, bucketMs: 100, buckets: 64, random }); // a short lap
  const due = new Map<number, number>();
  for (let p = 0; p < 2000; p++) {
    t.init(p);
    t.setPersistentKeepalive(p, 1 + Math.floor(random() * 30));
    const at = T0 + Math.floor(random() * 1000);
    t.anyAuthenticatedPacketTraversal(p, at);
    due.set(p, t.deadlineOf(p, TimerKind.PersistentKeepalive));
  }
  for (let now = T0; now <= T0 + 32 * S; now += 37) {
    t.tick(now, (peer) => {
      const d = due.get(peer)!;
      assert.ok(d <= now && now < d + 37, `peer ${peer} due ${d} fired ${now}`);
      due.delete(peer);
    });
  }
  assert.equal(due.size, 0);
});

test('rekey decisions of send.c and receive.c', () => {
  const birth = T0;
  assert.equal(shouldRekeyOnSend(true, birth, 0, birth + 120 * S - 1), false);
  assert.equal(shouldRekeyOnSend(true, birth, 0, birth + 120 * S), true);
  assert.equal(shouldRekeyOnSend(false, birth, 0, birth + 170 * S), false); // responders wait
  assert.equal(shouldRekeyOnSend(false, birth, 2 ** 60, birth), false);
  assert.equal(shouldRekeyOnSend(false, birth, 2 ** 60 + 2 ** 10, birth), true);

  assert.equal(shouldRekeyOnReceive(true, birth, birth + 165 * S - 1), false);
  assert.equal(shouldRekeyOnReceive(true, birth, birth + 165 * S), true);
  assert.equal(shouldRekeyOnReceive(false, birth, birth + 179 * S), false);

  const t = newTimers();
  assert.equal(t.lastMinuteHandshake(0, true, birth, birth + 100 * S), false);
  assert.equal(t.lastMinuteHandshake(0, true, birth, birth + 166 * S), true);
  assert.equal(t.lastMinuteHandshake(0, true, birth, birth + 167 * S), false); // once
  t.handshakeComplete(0);
  assert.equal(t.lastMinuteHandshake(0, true, birth, birth + 168 * S), true);
  assert.equal(t.lastMinuteHandshake(1, false, birth, birth + 168 * S), false);
});

test('misuse throws', () => {
  assert.throws(() => new Timers({ buckets: 1000 }), RangeError);
  assert.throws(() => new Timers({ bucketMs: 0 }), RangeError);
  assert.throws(() => new Timers().init(-1), RangeError);
  assert.throws(() => new Timers().init(1.5), RangeError);
  assert.throws(() => newTimers().tick(NaN, () => {}), RangeError);
  assert.throws(() => newTimers().dataReceived(0, NaN), RangeError);
});

// ---- Differential test against a naive model of timers.c ----


/**
 * timers.c with literal constants, one deadline per timer (NaN: not pending), every timer
 * checked on every tick, due ones fired in deadline order.
 */
class NaiveTimers implements Hooks {
  readonly dl: number[][] = [];
  readonly live: boolean[] = [];
  private readonly attempts: number[] = [];
  private readonly needAnother: boolean[] = [];
  private readonly interval: number[] = [];
  constructor(private readonly random: () => number) {}
  init(p: number): void {
    this.dl[p] = [NaN, NaN, NaN, NaN, NaN];
    this.attempts[p] = 0;
    this.needAnother[p] = false;
    this.interval[p] = 0;
    this.live[p] = true;
  }
  stop(p: number): void {
    if (this.live[p]) this.dl[p]!.fill(NaN);
    this.live[p] = false;
  }
  setPersistentKeepalive(p: number, s: number): boolean {
    if (this.live[p]) this.interval[p] = s;
    return false;
  }
  private pending(p: number, k: number): boolean {
    return !Number.isNaN(this.dl[p]![k]);
  }
  private mod(p: number, k: number, at: number): void {
    if (this.live[p]) this.dl[p]![k] = at;
  }
  private del(p: number, k: number): void {
    if (this.live[p]) this.dl[p]![k] = NaN;
  }
  dataSent(p: number, now: number): void {
    if (this.live[p] && !this.pending(p, 2)) this.mod(p, 2, now + 15000 + this.random() * 333);
  }
  dataReceived(p: number, now: number): void {
    if (!this.live[p]) return;
    if (!this.pending(p, 1)) this.mod(p, 1, now + 10000);
    else this.needAnother[p] = true;
  }
  anyAuthenticatedPacketSent(p: number): void {
    this.del(p, 1);
  }
  anyAuthenticatedPacketReceived(p: number): void {
    this.del(p, 2);
  }
  anyAuthenticatedPacketTraversal(p: number, now: number): void {
    if (this.interval[p]) this.mod(p, 4, now + this.interval[p]! * 1000);
  }
  handshakeInitiated(p: number, now: number): void {
    this.mod(p, 0, now + 5000 + this.random() * 333);
  }
  handshakeComplete(p: number): void {
    this.del(p, 0);
    this.attempts[p] = 0;
  }
  sessionDerived(p: number, now: number): void {
    this.mod(p, 3, now + 540000);
  }
  /**
   * Returns the peers with more than one timer due: the order in which those fire within a
   * tick is unspecified (as between timers of one jiffy in the kernel), and it matters.
   */
  tick(now: number, emit: (p: number, a: TimerAction, attempt: number) => void): Set<number> {
    const due: [number, number, number][] = [];
    this.dl.forEach((d, p) => d.forEach((at, k) => at <= now && due.push([at, p, k])));
    due.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    const seen = new Set<number>();
    const ambiguous = new Set<number>();
    for (const [, p] of due) (seen.has(p) ? ambiguous : seen).add(p);
    for (const [at, p, k] of due) {
      if (this.dl[p]![k] !== at) continue; // cancelled or moved by an earlier action
      this.dl[p]![k] = NaN;
      if (k === 0 && this.attempts[p]! > 18) {
        this.del(p, 1);
        emit(p, TimerAction.GiveUp, 0);
        if (!this.pending(p, 3)) this.mod(p, 3, now + 540000);
      } else if (k === 0) {
        this.attempts[p] = this.attempts[p]! + 1;
        emit(p, TimerAction.RetryHandshake, this.attempts[p]!);
      } else if (k === 1) {
        emit(p, TimerAction.SendKeepalive, 0);
        if (this.needAnother[p]) {
          this.needAnother[p] = false;
          this.mod(p, 1, now + 10000);
        }
      } else if (k === 2) {
        this.attempts[p] = 0;
        emit(p, TimerAction.NewHandshake, 0);
      } else if (k === 3) emit(p, TimerAction.ZeroKeys, 0);
      else if (this.interval[p]) emit(p, TimerAction.SendPersistentKeepalive, 0);
    }
    return ambiguous;
  }
}

test('differential: same actions at the same ticks as a naive model of timers.c', () => {
  const PEERS = 24;
  const random = seededRandom(42);
  // Both get the same constant jitter, so the order in which they draw it cannot matter.
  const real = new Timers({ capacity: 4, random: () => 0.25 });
  const naive = new NaiveTimers(() => 0.25);
  const both = (f: (m: Hooks) => void): void => (f(real), f(naive));
  for (let p = 0; p < PEERS; p++) both((m) => m.init(p));
  const ops: [weight: number, op: (m: Hooks, p: number, now: number, interval: number) => void][] = [
    [8, (m, p, now) => m.dataSent(p, now)],
    [8, (m, p, now) => m.dataReceived(p, now)],
    [6, (m, p) => m.anyAuthenticatedPacketSent(p)],
    [4, (m, p) => m.anyAuthenticatedPacketReceived(p)],
    [6, (m, p, now) => m.anyAuthenticatedPacketTraversal(p, now)],
    [3, (m, p, now) => m.handshakeInitiated(p, now)],
    [1, (m, p) => m.handshakeComplete(p)],
    [2, (m, p, now) => m.sessionDerived(p, now)],
    [1, (m, p, _now, interval) => m.setPersistentKeepalive(p, interval)],
    [0.15, (m, p) => m.stop(p)],
    [0.3, (m, p) => m.init(p)],
  ];
  const total = ops.reduce((sum, [w]) => sum + w, 0);
  const kinds = new Map<number, number>();
  let now = T0;
  let compared = 0;
  let resets = 0;
  for (let step = 0; step < 4000; step++) {
    let pick = random() * total;
    let i = 0;
    while ((pick -= ops[i]![0]) > 0) i++;
    const p = Math.floor(random() * PEERS);
    const interval = random() < 0.5 ? 0 : 1 + Math.floor(random() * 40);
    both((m) => ops[i]![1](m, p, now, interval));
    const until = now + Math.floor(random() * 2000);
    while (now < until) {
      now += STEP;
      const a: [number, string][] = [];
      const b: [number, string][] = [];
      real.tick(now, (q, action, attempt) => {
        a.push([q, `${q}:${action}:${attempt}`]);
        device(real, now, q, action);
      });
      const ambiguous = naive.tick(now, (q, action, attempt) => {
        b.push([q, `${q}:${action}:${attempt}`]);
        device(naive, now, q, action);
      });
      const clear = (list: [number, string][]): string[] =>
        list.filter(([q]) => !ambiguous.has(q)).map(([, line]) => line).sort();
      assert.deepEqual(clear(a), clear(b), `tick at ${now - T0} ms, step ${step}`);
      for (const line of clear(a)) {
        const action = Number(line.split(':')[1]);
        kinds.set(action, (kinds.get(action) ?? 0) + 1);
        compared++;
      }
      // Peers whose same-tick timers could fire in either order start over in both models.
      for (const q of ambiguous) {
        both((m) => m.init(q));
        resets++;
      }
    }
    if (step % 500 === 0) {
      for (let q = 0; q < PEERS; q++) {
        for (let k = 0; k < 5; k++) {
          const d = naive.live[q] ? naive.dl[q]![k]! : NaN;
          assert.equal(real.deadlineOf(q, k as TimerKind), d, `peer ${q} kind ${k}`);
        }
      }
    }
  }
  assert.ok(compared > 1000, `only ${compared} actions compared`);
  assert.ok(resets < compared / 20, `${resets} resets for ${compared} actions`);
  // Every kind of action occurred (and was compared) at least a few times.
  for (const action of Object.values(TimerAction)) {
    assert.ok((kinds.get(action) ?? 0) >= 3, `action ${action}: ${kinds.get(action)} times`);
  }
});
