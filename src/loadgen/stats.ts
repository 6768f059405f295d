// What the load generator counts and how it reports it: a latency histogram of fixed size with
// ~1% resolution (log-linear buckets as HdrHistogram's, so recording is O(1), memory does not
// grow with the run and two histograms merge by adding counts), the run's counters, the merge of
// the results of several engine threads into one, and the final report built from it, as text
// for people and as JSON for machines.

/** Values below 2 * SUB_BUCKETS are exact; above, each power of two is cut into SUB_BUCKETS. */
const SUB_BITS = 6;
const SUB_BUCKETS = 1 << SUB_BITS;
/** Values are clamped below 2^32 µs (71 minutes, longer than any run). */
const MAX_VALUE = 0xffffffff;
const MAX_SHIFT = 31 - SUB_BITS;
const BUCKETS = 2 * SUB_BUCKETS + MAX_SHIFT * SUB_BUCKETS;

function bucketOf(v: number): number {
  if (v < 2 * SUB_BUCKETS) return v;
  const shift = 31 - Math.clz32(v) - SUB_BITS;
  return 2 * SUB_BUCKETS + (shift - 1) * SUB_BUCKETS + ((v >>> shift) - SUB_BUCKETS);
}

/** The middle of bucket `b`'s range of values. */
function valueOf(b: number): number {
  if (b < 2 * SUB_BUCKETS) return b;
  const shift = Math.floor((b - 2 * SUB_BUCKETS) / SUB_BUCKETS) + 1;
  const m = ((b - 2 * SUB_BUCKETS) % SUB_BUCKETS) + SUB_BUCKETS;
  return m * 2 ** shift + (2 ** shift - 1) / 2;
}

/** A histogram as plain data, to cross from a worker thread (structured clone) and back. */
export interface HistogramState { counts: Float64Array; count: number; min: number; max: number; sum: number }

/** Latencies in whole microseconds. */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  min = Infinity;
  max = 0;
  private sum = 0;

  static fromState(s: HistogramState): LatencyHistogram {
    if (s.counts.length !== BUCKETS) throw new RangeError(`a histogram state has ${BUCKETS} buckets, got ${s.counts.length}`);
    const h = new LatencyHistogram();
    h.counts.set(s.counts);
    h.count = s.count;
    h.min = s.min;
    h.max = s.max;
    h.sum = s.sum;
    return h;
  }

  toState(): HistogramState {
    return { counts: this.counts.slice(), count: this.count, min: this.min, max: this.max, sum: this.sum };
  }

  record(us: number): void {
    const v = Math.min(MAX_VALUE, Math.max(0, Math.round(us)));
    this.counts[bucketOf(v)]! += 1;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  merge(other: LatencyHistogram): void {
    for (let b = 0; b < BUCKETS; b++) this.counts[b]! += other.counts[b]!;
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
  }

  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }

  /**
   * The value at or below which `p` percent of the recordings fall (nearest rank), within the
   * bucket's resolution and never outside [min, max]; NaN when empty.
   */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    if (rank >= this.count) return this.max;
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b]!;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, valueOf(b)));
    }
    return this.max;
  }
}

/** Everything the engine counts, cumulative since the start of the run. */
export interface Counters {
  /** New handshakes begun: by the rate, or to rekey an old session. */
  initiations: number;
  /** New initiations sent because the last one went unanswered for the timeout. */
  retransmits: number;
  /** Initiations sent again, now with mac2, after the server answered with a cookie reply. */
  retries: number;
  /** Responses consumed: completed handshakes. */
  handshakes: number;
  cookieReplies: number;
  /** Transport messages sent carrying a packet (keepalives not included). */
  dataPackets: number;
  /** Bytes of inner packets sent. */
  dataBytes: number;
  echoRequests: number;
  echoReplies: number;
  /** Transport messages received that decrypted (keepalives included), and their plaintext bytes, padding included. */
  rxPackets: number;
  rxBytes: number;
  /** Problems by kind: 'timeout', 'send:ENOBUFS', 'response:decrypt', ... */
  errors: Record<string, number>;
}

export function newCounters(): Counters {
  return {
    initiations: 0, retransmits: 0, retries: 0, handshakes: 0, cookieReplies: 0, dataPackets: 0, dataBytes: 0,
    echoRequests: 0, echoReplies: 0, rxPackets: 0, rxBytes: 0, errors: {},
  };
}

/** Adds every count of `from`, errors by kind included, to `into`. */
export function addCounters(into: Counters, from: Counters): void {
  for (const k of Object.keys(from) as (keyof Counters)[]) {
    if (k !== 'errors') into[k] += from[k];
  }
  for (const kind in from.errors) into.errors[kind] = (into.errors[kind] ?? 0) + from.errors[kind]!;
}

export function countError(c: Counters, kind: string): void {
  c.errors[kind] = (c.errors[kind] ?? 0) + 1;
}

export function errorTotal(c: Counters): number {
  let n = 0;
  for (const k in c.errors) n += c.errors[k]!;
  return n;
}

/** What a finished run hands to `buildReport`. Windows are measured from the start of the run. */
export interface RunResult {
  counters: Counters;
  latency: LatencyHistogram;
  /** Start to end, drain included. */
  elapsedMs: number;
  /** Start to the last new initiation sent: n initiations at rate r take n / r. */
  initiationWindowMs: number;
  /** Start to the last handshake completed or initiation sent, whichever is later. */
  handshakeWindowMs: number;
  /** Start to the first established session (data starts then); -1 when none was. */
  dataStartMs: number;
  /** First established session to the last data packet sent. */
  dataWindowMs: number;
  /** Engine threads whose results this is. */
  threads: number;
  clients: number;
  sources: number;
  offeredRate: number;
  /** Clients that completed at least one handshake. */
  established: number;
  /** Clients that got at least one echo reply back through their tunnel. */
  tunnelsWithReplies: number;
  /** Precomputed ephemerals per client; 0: a fresh one per initiation (EngineOptions.ephemerals). */
  ephemerals: number;
  /**
   * CPU time (user + system) of the whole generator process, every thread, over the run
   * (sending phase and drain; not the setup before it, precomputation included).
   */
  cpuMs: number;
  /** The part of cpuMs spent in the kernel: mostly sending and receiving datagrams. */
  systemCpuMs: number;
}

/** The CPU time of the whole process (every thread) since `start` (process.cpuUsage()). */
export function processCpuSince(start: NodeJS.CpuUsage | undefined): { cpuMs: number; systemCpuMs: number } {
  if (start === undefined) return { cpuMs: 0, systemCpuMs: 0 };
  const d = process.cpuUsage(start);
  return { cpuMs: (d.user + d.system) / 1000, systemCpuMs: d.system / 1000 };
}

export interface LoadgenReport {
  elapsedS: number;
  threads: number;
  clients: number;
  sources: number;
  offeredRate: number;
  initiations: number;
  initiationsPerS: number;
  retransmits: number;
  retries: number;
  handshakes: number;
  handshakesPerS: number;
  cookieReplies: number;
  cookieRepliesPerS: number;
  established: number;
  /** Initiation first sent -> response consumed (cookie rounds and retransmits included); null when none completed. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number } | null;
  data: {
    packets: number;
    bytes: number;
    pps: number;
    mbps: number;
    echoRequests: number;
    echoReplies: number;
    /** Echo requests without a reply, in percent; null when no echo was sent. */
    lossPercent: number | null;
    tunnelsWithReplies: number;
    rxPackets: number;
    rxBytes: number;
  };
  errors: Record<string, number>;
  /** Precomputed ephemerals per client; 0: a fresh one per initiation, as a real client. */
  ephemerals: number;
  /**
   * The generator's own CPU: process CPU time over the run, that time per initiation message
   * sent (new, retransmitted and resent with a cookie; the work for the responses, keepalives
   * and data is in it too), and the cores it kept busy on average. Near one core per engine
   * thread, the generator and not the server set the rates.
   */
  generator: { cpuS: number; systemS: number; usPerInitiation: number | null; cores: number };
}

const round = (v: number, digits: number): number => Number(v.toFixed(digits));
const ms = (us: number): number => round(us / 1000, 3);

/** `n` events over `windowMs` as a rate per second (0 for an empty window). */
function perSecond(n: number, windowMs: number): number {
  return windowMs > 0 ? round((n * 1000) / windowMs, 1) : 0;
}

/**
 * One result from those of engine threads that started together and ran disjoint clients:
 * counts and histograms add up (so percentiles are those of every sample), windows measured from
 * the common start take the longest, the data window runs from the first thread's first session
 * to the last thread's last packet.
 */
export function mergeResults(parts: readonly RunResult[]): RunResult {
  if (parts.length === 0) throw new RangeError('no results to merge');
  const counters = newCounters();
  const latency = new LatencyHistogram();
  let dataStart = Infinity;
  let dataEnd = -Infinity;
  for (const p of parts) {
    addCounters(counters, p.counters);
    latency.merge(p.latency);
    if (p.dataStartMs >= 0) {
      dataStart = Math.min(dataStart, p.dataStartMs);
      dataEnd = Math.max(dataEnd, p.dataStartMs + p.dataWindowMs);
    }
  }
  const longest = (f: (p: RunResult) => number): number => Math.max(...parts.map(f));
  const total = (f: (p: RunResult) => number): number => parts.reduce((n, p) => n + f(p), 0);
  return {
    counters,
    latency,
    elapsedMs: longest((p) => p.elapsedMs),
    initiationWindowMs: longest((p) => p.initiationWindowMs),
    handshakeWindowMs: longest((p) => p.handshakeWindowMs),
    dataStartMs: dataStart === Infinity ? -1 : dataStart,
    dataWindowMs: dataStart === Infinity ? 0 : dataEnd - dataStart,
    threads: total((p) => p.threads),
    clients: total((p) => p.clients),
    sources: total((p) => p.sources),
    // Shares of a rate may not add back to it exactly in floating point.
    offeredRate: round(total((p) => p.offeredRate), 6),
    established: total((p) => p.established),
    tunnelsWithReplies: total((p) => p.tunnelsWithReplies),
    ephemerals: parts[0]!.ephemerals,
    // Each thread measured the whole process (threads share it) over its own run: the longest
    // is the closest to the whole. ThreadedEngine replaces it with its own measurement.
    cpuMs: longest((p) => p.cpuMs),
    systemCpuMs: longest((p) => p.systemCpuMs),
  };
}

export function buildReport(r: RunResult): LoadgenReport {
  const c = r.counters;
  const h = r.latency;
  const sent = c.initiations + c.retransmits + c.retries;
  return {
    elapsedS: round(r.elapsedMs / 1000, 3),
    threads: r.threads,
    clients: r.clients,
    sources: r.sources,
    offeredRate: r.offeredRate,
    initiations: c.initiations,
    initiationsPerS: perSecond(c.initiations, r.initiationWindowMs),
    retransmits: c.retransmits,
    retries: c.retries,
    handshakes: c.handshakes,
    handshakesPerS: perSecond(c.handshakes, r.handshakeWindowMs),
    cookieReplies: c.cookieReplies,
    cookieRepliesPerS: perSecond(c.cookieReplies, r.handshakeWindowMs),
    established: r.established,
    latencyMs: h.count === 0 ? null : { p50: ms(h.percentile(50)), p90: ms(h.percentile(90)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean()) },
    data: {
      packets: c.dataPackets,
      bytes: c.dataBytes,
      pps: perSecond(c.dataPackets, r.dataWindowMs),
      mbps: r.dataWindowMs > 0 ? round((c.dataBytes * 8) / (r.dataWindowMs * 1000), 3) : 0,
      echoRequests: c.echoRequests,
      echoReplies: c.echoReplies,
      lossPercent: c.echoRequests === 0 ? null : round((100 * Math.max(0, c.echoRequests - c.echoReplies)) / c.echoRequests, 2),
      tunnelsWithReplies: r.tunnelsWithReplies,
      rxPackets: c.rxPackets,
      rxBytes: c.rxBytes,
    },
    errors: { ...c.errors },
    ephemerals: r.ephemerals,
    generator: {
      cpuS: round(r.cpuMs / 1000, 3),
      systemS: round(r.systemCpuMs / 1000, 3),
      usPerInitiation: sent === 0 ? null : round((r.cpuMs * 1000) / sent, 1),
      cores: r.elapsedMs > 0 ? round(r.cpuMs / r.elapsedMs, 2) : 0,
    },
  };
}

export function formatReport(r: LoadgenReport): string {
  const l = r.latencyMs;
  const d = r.data;
  const lines = [
    `loadgen: ${r.clients} clients from ${r.sources} source address${r.sources === 1 ? '' : 'es'} on ${r.threads} thread${r.threads === 1 ? '' : 's'}, ` +
      `${r.elapsedS} s, ${r.offeredRate} initiations/s offered`,
    `  initiations      ${r.initiations} (${r.initiationsPerS}/s), ${r.retries} resent with a cookie, ${r.retransmits} retransmitted after a timeout`,
    `  handshakes       ${r.handshakes} (${r.handshakesPerS}/s), ${r.established} of ${r.clients} clients established`,
    `  cookie replies   ${r.cookieReplies} (${r.cookieRepliesPerS}/s)`,
    `  latency ms       ${l ? `p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}  mean ${l.mean}` : '-'}`,
    `  data sent        ${d.packets} packets (${d.pps}/s), ${d.bytes} bytes (${d.mbps} Mbit/s)`,
  ];
  if (d.echoRequests > 0) {
    lines.push(`  echo             ${d.echoReplies} of ${d.echoRequests} replied (${d.lossPercent}% lost), ${d.tunnelsWithReplies} tunnels answered`);
  }
  lines.push(`  received         ${d.rxPackets} transport packets, ${d.rxBytes} bytes decrypted (padding included)`);
  const g = r.generator;
  const ephemerals = r.ephemerals === 0 ? 'a fresh ephemeral per initiation' : `${r.ephemerals} precomputed ephemeral${r.ephemerals === 1 ? '' : 's'} per client, reused`;
  lines.push(`  generator CPU    ${g.cpuS} s (${g.systemS} s in the kernel), ${g.cores} cores, ${g.usPerInitiation ?? '-'} µs per initiation sent; ${ephemerals}`);
  const kinds = Object.keys(r.errors).sort();
  lines.push(`  errors           ${kinds.length === 0 ? 'none' : kinds.map((k) => `${k} ${r.errors[k]}`).join(', ')}`);
  return lines.join('\n') + '\n';
}

/** One line of live progress: what happened between two snapshots `dtS` seconds apart. */
export function formatProgress(tS: number, prev: Counters, cur: Counters, dtS: number): string {
  const rate = (a: number, b: number): string => (dtS > 0 ? Math.round((b - a) / dtS) : 0).toString();
  const mbps = dtS > 0 ? (((cur.dataBytes - prev.dataBytes) * 8) / dtS / 1e6).toFixed(1) : '0.0';
  return `${tS.toFixed(0).padStart(4)}s  handshakes ${rate(prev.handshakes, cur.handshakes)}/s (${cur.handshakes})  ` +
    `initiations ${rate(prev.initiations, cur.initiations)}/s  cookies ${rate(prev.cookieReplies, cur.cookieReplies)}/s  ` +
    `data ${mbps} Mbit/s  echo ${rate(prev.echoReplies, cur.echoReplies)}/s  errors ${errorTotal(cur) - errorTotal(prev)}`;
}

export function copyCounters(c: Counters): Counters {
  return { ...c, errors: { ...c.errors } };
}
