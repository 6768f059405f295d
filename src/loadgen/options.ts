// Command line of `wireguard-ts loadgen`, through node:util parseArgs like the server's. Every
// value is checked before anything starts, and a run is always bounded: by --duration, and
// optionally sooner by --initiations / --packets.
import { isIPv6 } from 'node:net';
import { availableParallelism } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatIPv4, formatSubnet, parseEndpoint, parseIPv4, parseServerAddress, shown, type Subnet4 } from '../server/addresses.js';
import { isBase64Key } from '../server/keys.js';
import { MIN_PACKET_LEN } from './packets.js';
import { subnetCapacity } from './keys.js';

/** A mistake in the command line: printed as is, exit status 2. */
export class UsageError extends Error {}

/**
 * The fastest one client may initiate. A responder drops a peer's initiations that come within
 * 20 ms of the last one it accepted (HandshakeInitationRate), and TAI64N timestamps advance in
 * steps of ~16.8 ms; 30 ms leaves room for jitter on the way.
 */
export const MIN_INITIATION_INTERVAL_MS = 30;
/** The largest inner packet: the default MTU of a WireGuard interface. */
export const MAX_PACKET_LEN = 1420;
export const MAX_DURATION_S = 3600;
export const MAX_CLIENTS = 1 << 20;
export const MAX_SOURCES = 65536;
export const DEFAULT_TUNNEL = '10.78.0.1/16';
export const MAX_THREADS = 256;
/** Ephemerals per client with --precompute, unless --ephemerals says otherwise. */
export const DEFAULT_EPHEMERALS = 2;
export const MAX_EPHEMERALS = 64;
/**
 * One engine thread per core: a thread is bound by its own handshake crypto, and more threads
 * than cores only take turns. On a machine that also runs the server, --threads leaves it room.
 */
export const DEFAULT_THREADS = availableParallelism();

export const USAGE = `Usage: wireguard-ts loadgen COMMAND [options]
Simulates many WireGuard clients against any WireGuard server (wireguard-ts, wireguard-go, the
kernel): real handshakes (cookie replies answered with mac2), then data inside the tunnels.

  keys --clients N --out FILE [--tunnel CIDR]
        generate N clients into FILE (mode 0600; private keys) and print the server's side of
        them for \`wg addconf IFNAME\`. CIDR is the server's tunnel address (${DEFAULT_TUNNEL}):
        clients get the other addresses of its subnet, in order.
  config --keys FILE [--wg-set]
        print the server's side of the clients in FILE again (--wg-set: \`wg set IFNAME\` args).
  run --keys FILE --server HOST:PORT --server-key KEY [options]
        --clients N        use the first N clients of FILE (all)
        --source LIST      source addresses, one UDP socket each: 10.77.1.1-254,10.77.2.7,fd00::5
                           (default: one socket, the kernel picks the address). Each address must
                           be configured on an interface of this host.
        --rate N           initiations/s offered, spread round-robin over the clients (100);
                           at most clients x ${1000 / MIN_INITIATION_INTERVAL_MS} (one per client every ${MIN_INITIATION_INTERVAL_MS} ms)
        --initiations N    send no more than N new initiations (no limit)
        --duration S       the sending phase lasts at most S seconds (10; at most ${MAX_DURATION_S})
        --timeout MS       an initiation unanswered this long is lost and retransmitted (5000)
        --data-rate N      packets/s inside the tunnels, round-robin over established clients (0)
        --packets N        send no more than N data packets (no limit)
        --size N           inner packet size in bytes, IP header included (${MIN_PACKET_LEN}-${MAX_PACKET_LEN}; 128)
        --proto icmp|udp   echo requests (replies counted, losses reported) or UDP (icmp)
        --target A[:PORT]  where inner packets go, e.g. the server's tunnel address (required
                           with --data-rate; UDP port 9 by default)
        --threads N        engine threads (the number of CPUs, ${DEFAULT_THREADS} here): clients and source
                           addresses are dealt out round-robin, the rates and limits shared; at
                           most one thread per source address, client and initiation
        --precompute       before the run, make each client a few ephemeral keys and everything of
                           an initiation that does not depend on the send time; an initiation then
                           costs one AEAD of its timestamp plus BLAKE2s (~25 µs of generator CPU
                           with the send, instead of ~120), so the server, not the generator, is
                           the bottleneck. A load-testing shortcut, never what a real client does:
                           a client reuses its ephemerals across initiations (giving up forward
                           secrecy). Without it every initiation gets a fresh ephemeral key, as a
                           real client's does
        --ephemerals N     with --precompute: ephemerals per client, used in turn (${DEFAULT_EPHEMERALS}; 1-${MAX_EPHEMERALS});
                           each costs ~2 X25519 before the run and 208 bytes
        --json             the final report as JSON on stdout
        The report gives the generator's own CPU time per initiation sent (responses and data
        included) beside the rates: near a core per thread, the generator is the bottleneck.
        After the sending phase, answers still due are awaited for up to 2 s (or --timeout).
        Live progress goes to stderr when it is a terminal.
`;

export interface KeysOptions { command: 'keys'; clients: number; out: string; tunnel: Subnet4 }
export interface ConfigOptions { command: 'config'; keys: string; format: 'addconf' | 'wg-set' }
/** What a run offers the server: handshakes, then data inside the tunnels. */
export interface TrafficOptions {
  rate: number;
  initiations: number;
  timeoutMs: number;
  dataRate: number;
  packets: number;
  size: number;
  proto: 'icmp' | 'udp';
  /** The inner destination as a 32-bit number, and the UDP port. */
  target?: number;
  targetPort: number;
  /**
   * 0: a fresh ephemeral key per initiation, as a real client. N: each client's initiations take
   * turns with N ephemerals precomputed before the run (--precompute; initiation.ts).
   */
  ephemerals: number;
}
export interface RunOptions extends TrafficOptions {
  command: 'run';
  keys: string;
  /** As given: an address or a DNS name, resolved once at start. */
  serverHost: string;
  serverPort: number;
  serverKey: string;
  clients?: number;
  /** Source addresses to bind, one socket each; empty: one wildcard socket. */
  sources: string[];
  durationS: number;
  threads: number;
  json: boolean;
}
export type LoadgenOptions = KeysOptions | ConfigOptions | RunOptions | 'help';

/**
 * Source addresses from a comma-separated list of IPv4 addresses, IPv4 ranges (10.77.1.1-254 or
 * 10.77.1.1-10.77.2.9) and IPv6 addresses; a message saying what is wrong otherwise.
 */
export function parseSources(list: string): string[] | string {
  const out: string[] = [];
  for (const item of list.split(',')) {
    if (isIPv6(item) && !item.includes('%')) {
      out.push(item);
      continue;
    }
    const m = /^([^-]+)(?:-(.+))?$/.exec(item);
    const first = m ? parseIPv4(m[1]!) : null;
    if (first === null) return `--source: ${shown(item)} is not an IPv4 or IPv6 address or an IPv4 range like 10.77.1.1-254`;
    let last = first;
    if (m![2] !== undefined) {
      const end = /^\d{1,3}$/.test(m![2]) ? parseIPv4(`${formatIPv4(first).replace(/\d+$/, '')}${m![2]}`) : parseIPv4(m![2]);
      if (end === null || end < first) return `--source: ${shown(item)} is not a range from a lower to a higher address`;
      last = end;
    }
    if (out.length + last - first + 1 > MAX_SOURCES) return `--source: more than ${MAX_SOURCES} addresses`;
    for (let a = first; a <= last; a++) out.push(formatIPv4(a));
  }
  if (new Set(out).size !== out.length) return '--source: an address is listed twice';
  return out;
}

function integer(flag: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || !/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`${flag} takes an integer from ${min} to ${max}, got ${shown(v ?? '')}`);
  return n;
}

function number(flag: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`${flag} takes a number from ${min} to ${max}, got ${shown(v ?? '')}`);
  return n;
}

/** Each command's options, for parseArgs: a boolean takes no value. */
const COMMAND_OPTIONS: Record<string, NonNullable<ParseArgsConfig['options']>> = {
  keys: { clients: { type: 'string' }, out: { type: 'string' }, tunnel: { type: 'string' } },
  config: { keys: { type: 'string' }, 'wg-set': { type: 'boolean' } },
  run: Object.fromEntries([
    ...['keys', 'server', 'server-key', 'clients', 'source', 'rate', 'initiations', 'duration', 'timeout', 'data-rate', 'packets', 'size',
      'proto', 'target', 'threads', 'ephemerals'].map((name) => [name, { type: 'string' }] as const),
    ...['precompute', 'json'].map((name) => [name, { type: 'boolean' }] as const),
  ]),
};

/** Parses `argv` (after `loadgen`); throws UsageError. */
export function parseLoadgenArgs(argv: readonly string[]): LoadgenOptions {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h' || rest.includes('--help') || rest.includes('-h')) return 'help';
  const options = COMMAND_OPTIONS[command];
  if (options === undefined) throw new UsageError(`loadgen: unknown command ${shown(command)}\n${USAGE}`);
  // Not strict: parseArgs reports through tokens, and the loop below words each mistake.
  const { tokens } = parseArgs({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  const v = new Map<string, string>();
  for (const t of tokens) {
    if (t.kind === 'positional') throw new UsageError(`loadgen ${command}: unexpected argument ${shown(t.value)}\n${USAGE}`);
    if (t.kind !== 'option') continue;
    const type = t.rawName.startsWith('--') ? options[t.name]?.type : undefined;
    if (type === undefined) throw new UsageError(`loadgen ${command}: unknown option ${shown(t.rawName)}\n${USAGE}`);
    if (v.has(t.rawName)) throw new UsageError(`${t.rawName} is given twice`);
    if (type === 'boolean' && t.inlineValue) throw new UsageError(`${t.rawName} takes no value`);
    if (type === 'string' && t.value === undefined) throw new UsageError(`${t.rawName} needs a value`);
    v.set(t.rawName, t.value ?? '');
  }
  const need = (flag: string): string => {
    const x = v.get(flag);
    if (x === undefined || x === '') throw new UsageError(`loadgen ${command} needs ${flag}`);
    return x;
  };

  if (command === 'keys') {
    const tunnel = parseServerAddress(v.get('--tunnel') ?? DEFAULT_TUNNEL);
    if (typeof tunnel === 'string') throw new UsageError(`--tunnel: ${tunnel}`);
    const clients = integer('--clients', need('--clients'), 1, MAX_CLIENTS);
    if (clients > subnetCapacity(tunnel)) throw new UsageError(`--clients ${clients}: the subnet of --tunnel ${formatSubnet(tunnel)} has room for ${subnetCapacity(tunnel)}`);
    return { command: 'keys', clients, out: need('--out'), tunnel };
  }
  if (command === 'config') return { command: 'config', keys: need('--keys'), format: v.has('--wg-set') ? 'wg-set' : 'addconf' };

  const server = parseEndpoint(need('--server'));
  if (typeof server === 'string') throw new UsageError(`--server: ${server}`);
  if (server.port === undefined) throw new UsageError('--server needs a port: HOST:PORT');
  const serverKey = need('--server-key');
  if (!isBase64Key(serverKey)) throw new UsageError('--server-key is not a base64 WireGuard public key (as `wg show IFNAME public-key` prints it)');
  const sources = v.has('--source') ? parseSources(need('--source')) : [];
  if (typeof sources === 'string') throw new UsageError(sources);
  const serverV6 = server.host.startsWith('[');
  if (sources.some((s) => isIPv6(s) !== serverV6)) throw new UsageError(`--source: every address must be IPv${serverV6 ? 6 : 4}, like the server's`);
  const proto = v.get('--proto') ?? 'icmp';
  if (proto !== 'icmp' && proto !== 'udp') throw new UsageError(`--proto takes icmp or udp, got ${shown(proto)}`);
  const dataRate = v.has('--data-rate') ? number('--data-rate', v.get('--data-rate'), 0, 10_000_000) : 0;
  let target: number | undefined;
  let targetPort = 9;
  if (v.has('--target')) {
    const m = /^([^:]+)(?::(\d+))?$/.exec(need('--target'));
    const a = m ? parseIPv4(m[1]!) : null;
    if (a === null) throw new UsageError(`--target: ${shown(v.get('--target')!)} is not an IPv4 address or ADDRESS:PORT (inner packets are IPv4)`);
    target = a;
    if (m![2] !== undefined) targetPort = integer('--target port', m![2], 1, 65535);
  }
  if (dataRate > 0 && target === undefined) throw new UsageError('--data-rate needs --target (e.g. the server\'s tunnel address)');
  if (v.has('--ephemerals') && !v.has('--precompute')) throw new UsageError('--ephemerals needs --precompute (without it, every initiation has a fresh ephemeral)');
  const ephemerals = !v.has('--precompute') ? 0 : v.has('--ephemerals') ? integer('--ephemerals', v.get('--ephemerals'), 1, MAX_EPHEMERALS) : DEFAULT_EPHEMERALS;
  return {
    command: 'run',
    keys: need('--keys'),
    serverHost: serverV6 ? server.host.slice(1, -1) : server.host,
    serverPort: server.port,
    serverKey,
    clients: v.has('--clients') ? integer('--clients', v.get('--clients'), 1, MAX_CLIENTS) : undefined,
    sources,
    rate: v.has('--rate') ? number('--rate', v.get('--rate'), 0.001, 10_000_000) : 100,
    initiations: v.has('--initiations') ? integer('--initiations', v.get('--initiations'), 1, Number.MAX_SAFE_INTEGER) : Infinity,
    durationS: v.has('--duration') ? number('--duration', v.get('--duration'), 0.001, MAX_DURATION_S) : 10,
    timeoutMs: v.has('--timeout') ? integer('--timeout', v.get('--timeout'), 100, 600_000) : 5000,
    dataRate,
    packets: v.has('--packets') ? integer('--packets', v.get('--packets'), 1, Number.MAX_SAFE_INTEGER) : Infinity,
    size: v.has('--size') ? integer('--size', v.get('--size'), MIN_PACKET_LEN, MAX_PACKET_LEN) : 128,
    proto,
    target,
    targetPort,
    threads: v.has('--threads') ? integer('--threads', v.get('--threads'), 1, MAX_THREADS) : DEFAULT_THREADS,
    ephemerals,
    json: v.has('--json'),
  };
}

/**
 * Checks what depends on the keys file: the number of clients, and the rate they can offer
 * without a responder dropping initiations as a flood. Returns the client count to use.
 */
export function checkPlan(o: RunOptions, available: number): number {
  if (available === 0) throw new UsageError(`${o.keys} holds no clients`);
  const clients = o.clients ?? available;
  if (clients > available) throw new UsageError(`--clients ${clients}: ${o.keys} holds only ${available}`);
  const most = (clients * 1000) / MIN_INITIATION_INTERVAL_MS;
  if (o.rate > most) {
    throw new UsageError(`--rate ${o.rate} is more than ${clients} clients may offer: one initiation per client every ${MIN_INITIATION_INTERVAL_MS} ms is ${most}/s ` +
      '(a responder drops faster ones from a peer as a flood); use more clients');
  }
  return clients;
}
