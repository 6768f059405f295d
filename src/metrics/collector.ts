// What a scrape contains, and how it is written without stalling the main thread.
//
// Per-peer families keep the names and labels of the widespread prometheus_wireguard_exporter
// (wireguard_sent_bytes_total, wireguard_received_bytes_total, wireguard_latest_handshake_seconds
// with interface, public_key in base64, allowed_ips as `wg show dump` prints them), so its Grafana
// dashboards work unchanged. Device families come first: they are few and always complete.
//
// A family's samples must form one group, so the per-peer part is three walks over the peers
// (holding three families' worth of text for a million peers would cost hundreds of MB). Each
// walk pauses every SLICE_MS of work: the caller's `pause` yields to the event loop (and
// waits for a slow client), so UAPI requests, the timer tick and the workers' control records
// keep being served during a long scrape. A peer added or removed meanwhile may be in some
// families and not others, as with any scrape of a changing system.
import type { PeerState } from '../uapi/types.js';
import type { Handshakes } from '../device/handshakes.js';
import { ExpositionWriter, formatValue, labelPairs } from './exposition.js';

/**
 * Main-thread time one slice of peers may take before the walk pauses; a budget of time, not
 * of peers, as a peer's cost varies (its allowed IPs, cold code on the first scrape).
 */
export const SLICE_MS = 5;
/** Peers between two looks at the clock. */
const CLOCK_EVERY = 32;

/** One data-plane thread's counters (tables.ts COUNTER_NAMES and values, in that order). */
export interface WorkerCounters {
  worker: string;
  names: readonly string[];
  values: ArrayLike<number>;
}

/** Handshakes completed, rejected by message type and reason, cookie replies sent, initiations offloaded. */
export type HandshakeStats = Handshakes['stats'];

/** What a scrape reads; the device's adapter is in source.ts. */
export interface MetricsSource {
  readonly ifname: string;
  peerCount(): number;
  /**
   * A new walk over the peers in a stable order. It is resumed across event-loop turns, so it
   * must tolerate peers coming and going between two steps.
   */
  peers(): Iterator<PeerState>;
  handshakes(): HandshakeStats;
  underLoad(): boolean;
  /** Control records waiting in the workers' rings to the main thread. */
  pendingRecords(): number;
  /** Data-plane workers restarted after a failure. */
  workerRestarts(): number;
  workers(): WorkerCounters[];
}

/** Yields between slices; resolves false when the scrape should stop (the client went away). */
export type Pause = () => Promise<boolean>;

const PEER_FAMILIES = [
  { name: 'wireguard_sent_bytes_total', type: 'counter', help: 'Bytes sent to the peer', value: (p: PeerState) => p.txBytes },
  { name: 'wireguard_received_bytes_total', type: 'counter', help: 'Bytes received from the peer', value: (p: PeerState) => p.rxBytes },
  {
    name: 'wireguard_latest_handshake_seconds', type: 'gauge', help: 'UNIX time of the latest handshake with the peer (0: none yet)',
    value: (p: PeerState) => p.lastHandshakeSec,
  },
] as const;

/**
 * Writes a whole scrape into `emit` in chunks: device families, then at most `maxPeers` peers'
 * series (0: none, Infinity: all). Returns false if `pause` asked to stop.
 */
export async function writeMetrics(source: MetricsSource, maxPeers: number, emit: (chunk: Uint8Array) => void, pause: Pause): Promise<boolean> {
  const w = new ExpositionWriter(emit);
  const iface = labelPairs({ interface: source.ifname });
  writeDevice(w, source, iface);
  for (const f of PEER_FAMILIES) {
    if (maxPeers <= 0) break;
    w.family(f.name, f.type, f.help);
    const head = `${f.name}{${iface},public_key="`;
    const walk = source.peers();
    let sliceStart = performance.now();
    for (let n = 0; n < maxPeers; n++) {
      if (n % CLOCK_EVERY === CLOCK_EVERY - 1 && performance.now() - sliceStart >= SLICE_MS) {
        if (!(await pause())) return false;
        sliceStart = performance.now();
      }
      const next = walk.next();
      if (next.done === true) break;
      writePeerSample(w, head, next.value, f.value(next.value));
    }
  }
  w.flush();
  return true;
}

/** Writes one line; `head` is the family's `name{interface="...",public_key="`. */
function writePeerSample(w: ExpositionWriter, head: string, p: PeerState, value: number | bigint): void {
  // Base64 and addresses never need escaping.
  w.text(head);
  w.base64(p.publicKey);
  w.text('",allowed_ips="');
  if (p.allowedIps.length === 0) w.text('(none)');
  for (let i = 0; i < p.allowedIps.length; i++) {
    if (i > 0) w.text(',');
    w.prefix(p.allowedIps[i]!.addr, p.allowedIps[i]!.cidr);
  }
  w.text('"} ');
  w.text(formatValue(value));
  w.text('\n');
}

function writeDevice(w: ExpositionWriter, s: MetricsSource, iface: string): void {
  const one = (name: string, type: 'counter' | 'gauge', help: string, value: number): void => {
    w.family(name, type, help);
    w.sample(name, iface, value);
  };
  one('wireguard_peers', 'gauge', 'Peers configured on the interface', s.peerCount());
  const hs = s.handshakes();
  one('wireguard_handshakes_completed_total', 'counter', 'Handshakes completed, as initiator or responder', hs.completed);
  const rejected = 'wireguard_handshakes_rejected_total';
  w.family(rejected, 'counter', 'Handshake messages rejected, by message type and reason (cookie: answered with a cookie reply under load)');
  for (const type of ['initiation', 'response'] as const) {
    for (const [reason, n] of Object.entries(hs.rejected[type])) w.sample(rejected, `${iface},${labelPairs({ type, reason })}`, n);
  }
  one('wireguard_cookie_replies_sent_total', 'counter', 'Cookie replies sent to handshake messages received under load', hs.cookieRepliesSent);
  one('wireguard_handshakes_offloaded_total', 'counter', 'Initiations whose DH work went to the handshake offload pool (queue deep)', hs.offloaded);
  one('wireguard_unknown_index_reports_total', 'counter', "Transport messages on another node's index reported by the workers (cluster mode)", hs.routed.reports);
  const routed = 'wireguard_routed_initiations_total';
  w.family(routed, 'counter', "Handshakes started for another node's index (cluster mode): sent, or refused by the per-client and global limits");
  w.sample(routed, `${iface},${labelPairs({ result: 'sent' })}`, hs.routed.initiations);
  w.sample(routed, `${iface},${labelPairs({ result: 'limited' })}`, hs.routed.limited);
  one('wireguard_under_load', 'gauge', 'Whether handshakes must carry a cookie (mac2) because the handshake queue is deep', s.underLoad() ? 1 : 0);
  one('wireguard_control_records_pending', 'gauge', "Handshake messages waiting in the workers' rings to the main thread", s.pendingRecords());
  one('wireguard_worker_restarts_total', 'counter', 'Data-plane workers restarted after they failed', s.workerRestarts());

  const workers = s.workers();
  const packets = 'wireguard_worker_packets_total';
  w.family(packets, 'counter', 'Packets handled per data-plane worker: datagrams received (rx), data messages sent (tx)');
  for (const c of workers) {
    for (const [direction, counter] of [['rx', 'rx_packets'], ['tx', 'tx_packets']] as const) {
      w.sample(packets, `${iface},${labelPairs({ worker: c.worker, direction })}`, c.values[c.names.indexOf(counter)] ?? 0);
    }
  }
  const dropped = 'wireguard_packets_dropped_total';
  w.family(dropped, 'counter', 'Packets dropped by the data plane, per worker and reason');
  for (const c of workers) {
    c.names.forEach((name, i) => {
      if (name.startsWith('drop_')) w.sample(dropped, `${iface},${labelPairs({ worker: c.worker, reason: name.slice(5) })}`, c.values[i] ?? 0);
    });
  }
}
