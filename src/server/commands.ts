// The server mode's commands: up, down, add-client, remove-client, list-clients, show-client.
//
// Each command validates everything first, changes the running daemon through UAPI (a client is
// added or removed live: the other peers and their sessions are not touched), and writes the
// state directory last; when a later step fails, the earlier ones are undone, so a command
// either happens whole or leaves things as they were.
//
// Output: only a client's configuration (and its QR code) ever contains a secret. add-client and
// show-client print the configuration alone on stdout (`add-client bob > bob.conf` gives a file
// wg-quick takes), everything else on stderr.
import { ctEqual } from '../crypto/memory.js';
import { UapiError, uapiAlive, uapiGet, uapiSet } from '../uapi/client.js';
import type { PeerState } from '../uapi/types.js';
import { levelFromEnv } from '../log.js';
import { contains, formatIPv4, formatNetwork, formatSubnet, nextFreeAddress, parseEndpoint, parseServerAddress, type Subnet4 } from './addresses.js';
import {
  DEFAULT_MTU, DEFAULT_ROUTES, clientAddress, formatClientConfig, type ClientEntry, type ServerConfig,
} from './config.js';
import { keyBase64, keyBytes, keyHex, newKeyPair, newPresharedKey, publicKeyFromPrivate } from './keys.js';
import {
  DEFAULT_ADDRESS, DEFAULT_CLIENT, DEFAULT_PORT, USAGE, UsageError, parseServerArgs, type CommandName, type ServerOptions,
} from './options.js';
import { renderQr } from './qr.js';
import {
  ServerError, ensureStateDir, loadClientKey, loadConfig, removeClientKey, saveClientKey, saveConfig, statePaths, withLock, type StatePaths,
} from './state.js';
import { configureLink, detectHostAddress, ipv4Forwarding, linkExists, startDaemon, stopDaemon } from './system.js';

interface Ctx {
  opts: ServerOptions;
  paths: StatePaths;
  out: (text: string) => void;
  err: (text: string) => void;
  tty: boolean;
  /** The endpoint for client configs, found once per command (its notes are printed once). */
  endpoint?: string;
}

/** Runs one server command; returns the exit status (0 ok, 1 failed, 2 bad usage). */
export async function runServerCli(argv: string[]): Promise<number> {
  const out = (t: string): void => void process.stdout.write(t);
  const err = (t: string): void => void process.stderr.write(t);
  try {
    const opts = parseServerArgs(argv, process.env);
    if (opts === 'help') {
      out(USAGE);
      return 0;
    }
    const ctx: Ctx = { opts, paths: statePaths(opts.stateDir, opts.ifname), out, err, tty: process.stdout.isTTY === true };
    await COMMANDS[opts.command](ctx);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`wireguard-ts: ${e.message}\n`);
      return 2;
    }
    const debug = levelFromEnv(process.env.LOG_LEVEL) === 'debug';
    err(`wireguard-ts: ${(e as Error).message}\n`);
    if (!(e instanceof ServerError || e instanceof UapiError) && debug) err(`${(e as Error).stack}\n`);
    return 1;
  }
}

const COMMANDS: Record<CommandName, (ctx: Ctx) => Promise<void>> = {
  up,
  down,
  'add-client': addClient,
  'remove-client': removeClient,
  'list-clients': listClients,
  'show-client': showClient,
};

// ---- commands ----

async function up(ctx: Ctx): Promise<void> {
  const { opts, paths } = ctx;
  ensureStateDir(paths);
  await withLock(paths, async () => {
    const existing = loadConfig(paths);
    const config = existing === undefined ? freshConfig(opts) : withOverrides(existing, opts);
    const status = await daemonStatus(opts.ifname, existing);
    if (status === 'foreign') throw foreign(ctx);
    const first = existing === undefined ? createClient(config, opts.client ?? DEFAULT_CLIENT, opts) : undefined;
    if (existing !== undefined && (opts.client ?? opts.dns ?? opts.allowedIps) !== undefined) {
      ctx.err('note: --client, --dns and --allowed-ips of `up` only shape the first client, made with the server; give them to add-client\n');
    }
    if (status === 'ours') {
      const changed = liveChanges(existing!, config);
      if (changed.length > 0) {
        throw new ServerError(`${opts.ifname} is already up; run \`wireguard-ts down\` first to change ${changed.join(', ')}`);
      }
      if (config.endpoint !== existing!.endpoint) saveConfig(paths, config);
      printServer(ctx, config, 'was already up');
      return;
    }
    await startDaemon(opts.ifname, opts.workers);
    try {
      await uapiSet(opts.ifname, deviceLines(config)).catch((e: unknown) => {
        if (e instanceof UapiError && e.errno === 98) throw new ServerError(`--port: UDP port ${config.listenPort} is in use by another program`);
        throw e;
      });
      configureLink(opts.ifname, config.address, config.mtu);
      if (first !== undefined) saveClientKey(paths, first.entry.name, first.privateKey);
      if (existing === undefined || config !== existing) saveConfig(paths, config);
    } catch (e) {
      await stopDaemon(opts.ifname).catch(() => undefined);
      if (first !== undefined) removeClientKey(paths, first.entry.name);
      throw e;
    }
    printServer(ctx, config, 'is up');
    if (first !== undefined) {
      ctx.out(`\nFirst client "${first.entry.name}", address ${formatIPv4(first.address)}. Its configuration, for \`wg-quick up\` or a WireGuard app:\n\n`);
      printClientConfig(ctx, config, first.entry, first.privateKey);
      ctx.out('\nMore clients: wireguard-ts add-client NAME\n');
    }
    if (!ipv4Forwarding()) {
      ctx.err(`note: IPv4 forwarding is off, so clients reach this server (${formatIPv4(config.address.host)}) and nothing beyond it. ` +
        `To route their traffic on: sysctl -w net.ipv4.ip_forward=1, plus NAT such as ` +
        `iptables -t nat -A POSTROUTING -s ${formatNetwork(config.address)} ! -o ${opts.ifname} -j MASQUERADE\n`);
    }
  });
}

async function down(ctx: Ctx): Promise<void> {
  const { opts, paths } = ctx;
  await withLock(paths, async () => {
    const status = await daemonStatus(opts.ifname, loadConfig(paths));
    if (status === 'foreign') throw foreign(ctx);
    if (status === 'absent') {
      ctx.out(`${opts.ifname} is not up\n`);
      return;
    }
    await stopDaemon(opts.ifname);
    ctx.out(`${opts.ifname} is down\n`);
  });
}

async function addClient(ctx: Ctx): Promise<void> {
  const { opts, paths } = ctx;
  await withLock(paths, async () => {
    const config = requireConfig(ctx);
    const status = await daemonStatus(opts.ifname, config);
    if (status === 'foreign') throw foreign(ctx);
    const c = createClient(config, opts.name!, opts);
    if (status === 'ours') await uapiSet(opts.ifname, peerLines(c.entry));
    try {
      saveClientKey(paths, c.entry.name, c.privateKey);
      saveConfig(paths, config);
    } catch (e) {
      if (status === 'ours') await uapiSet(opts.ifname, removeLines(c.entry)).catch(() => undefined);
      removeClientKey(paths, c.entry.name);
      throw e;
    }
    ctx.err(`client ${c.entry.name} added, address ${formatIPv4(c.address)}; ` +
      (status === 'ours' ? `live on ${opts.ifname}\n` : `${opts.ifname} is down: it serves the client from the next \`wireguard-ts up\`\n`));
    printClientConfig(ctx, config, c.entry, c.privateKey);
  });
}

async function removeClient(ctx: Ctx): Promise<void> {
  const { opts, paths } = ctx;
  await withLock(paths, async () => {
    const config = requireConfig(ctx);
    const client = findClient(config, opts.name!);
    const status = await daemonStatus(opts.ifname, config);
    if (status === 'foreign') throw foreign(ctx);
    if (status === 'ours') await uapiSet(opts.ifname, removeLines(client));
    const kept = { ...config, clients: config.clients.filter((c) => c !== client) };
    try {
      saveConfig(paths, kept);
    } catch (e) {
      if (status === 'ours') await uapiSet(opts.ifname, peerLines(client)).catch(() => undefined);
      throw e;
    }
    removeClientKey(paths, client.name);
    ctx.err(`client ${client.name} removed${status === 'ours' ? ` (live on ${opts.ifname})` : ''}\n`);
  });
}

async function listClients(ctx: Ctx): Promise<void> {
  const config = requireConfig(ctx);
  const status = await daemonStatus(ctx.opts.ifname, config);
  const live = new Map<string, PeerState>();
  if (status === 'ours') {
    for (const p of (await uapiGet(ctx.opts.ifname)).peers) live.set(keyBase64(p.publicKey), p);
  } else {
    ctx.err(`${ctx.opts.ifname} is not up${status === 'foreign' ? ' as this server' : ''}: no handshake or transfer figures\n`);
  }
  const now = Date.now() / 1000;
  const rows = config.clients.map((c) => {
    const p = live.get(c.publicKey);
    const addr = clientAddress(config, c);
    return [
      c.name, addr === undefined ? c.allowedIps.join(',') : formatIPv4(addr), c.publicKey,
      p === undefined ? '-' : p.lastHandshakeSec === 0 ? 'never' : `${age(now - p.lastHandshakeSec)} ago`,
      p === undefined ? '-' : bytes(p.rxBytes), p === undefined ? '-' : bytes(p.txBytes),
    ];
  });
  const table = [['NAME', 'ADDRESS', 'PUBLIC KEY', 'LATEST HANDSHAKE', 'RECEIVED', 'SENT'], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  ctx.out(table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
  if (rows.length === 0) ctx.err('no clients yet: wireguard-ts add-client NAME\n');
}

async function showClient(ctx: Ctx): Promise<void> {
  const config = requireConfig(ctx);
  const client = findClient(config, ctx.opts.name!);
  printClientConfig(ctx, config, client, loadClientKey(ctx.paths, client.name));
}

// ---- the pieces ----

function requireConfig(ctx: Ctx): ServerConfig {
  const config = loadConfig(ctx.paths);
  if (config === undefined) throw new ServerError(`there is no server ${ctx.opts.ifname} in ${ctx.paths.dir}: run \`wireguard-ts up\` first`);
  return config;
}

function findClient(config: ServerConfig, name: string): ClientEntry {
  const c = config.clients.find((x) => x.name === name);
  if (c !== undefined) return c;
  const names = config.clients.map((x) => x.name);
  throw new ServerError(`there is no client named ${name} (${names.length === 0 ? 'no clients yet' : `clients: ${names.join(', ')}`})`);
}

function freshConfig(o: ServerOptions): ServerConfig {
  return {
    privateKey: newKeyPair().privateKey,
    address: o.address ?? (parseServerAddress(DEFAULT_ADDRESS) as Subnet4),
    listenPort: o.port ?? DEFAULT_PORT,
    mtu: o.mtu ?? DEFAULT_MTU,
    ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
    clients: [],
    extra: [],
  };
}

/** `existing` with the flags of `up` applied; the same object when no flag changes anything. */
export function withOverrides(existing: ServerConfig, o: ServerOptions): ServerConfig {
  const c = { ...existing };
  if (o.port !== undefined && o.port !== c.listenPort) c.listenPort = o.port;
  if (o.mtu !== undefined && o.mtu !== c.mtu) c.mtu = o.mtu;
  if (o.endpoint !== undefined && o.endpoint !== c.endpoint) c.endpoint = o.endpoint;
  if (o.address !== undefined && formatSubnet(o.address) !== formatSubnet(c.address)) {
    const address = o.address;
    for (const client of c.clients) {
      const a = clientAddress(c, client);
      if (a !== undefined && (!contains(address, a) || a === address.host)) {
        throw new UsageError(`--address: client ${client.name} has ${formatIPv4(a)}, which ${a === address.host ? 'is' : 'is outside'} ${formatSubnet(address)}; remove that client first or pick another address`);
      }
    }
    c.address = address;
  }
  const same = c.listenPort === existing.listenPort && c.mtu === existing.mtu && c.endpoint === existing.endpoint && c.address === existing.address;
  return same ? existing : c;
}

/** What `up` cannot change on a running daemon without a restart. */
function liveChanges(a: ServerConfig, b: ServerConfig): string[] {
  const changed: string[] = [];
  if (a.listenPort !== b.listenPort) changed.push(`--port (now ${a.listenPort})`);
  if (formatSubnet(a.address) !== formatSubnet(b.address)) changed.push(`--address (now ${formatSubnet(a.address)})`);
  if (a.mtu !== b.mtu) changed.push(`--mtu (now ${a.mtu})`);
  return changed;
}

/** Adds a new client to `config` (in memory) with the lowest free address and fresh keys. */
export function createClient(config: ServerConfig, name: string, o: Pick<ServerOptions, 'dns' | 'allowedIps'>): { entry: ClientEntry; privateKey: string; address: number } {
  if (config.clients.some((c) => c.name === name)) throw new ServerError(`a client named ${name} already exists (show-client ${name} prints its configuration)`);
  const used = config.clients.flatMap((c) => clientAddress(config, c) ?? []);
  const address = nextFreeAddress(config.address, used);
  if (address === undefined) {
    throw new ServerError(`no free address left in ${formatNetwork(config.address)} (${config.clients.length} clients); ` +
      'remove a client, or `down` and `up --address` with a shorter prefix');
  }
  const keys = newKeyPair();
  const entry: ClientEntry = {
    name,
    publicKey: keys.publicKey,
    presharedKey: newPresharedKey(),
    allowedIps: [`${formatIPv4(address)}/32`],
    ...(o.dns !== undefined ? { dns: o.dns } : {}),
    ...(o.allowedIps !== undefined ? { routes: o.allowedIps } : {}),
    extra: [],
  };
  config.clients.push(entry);
  return { entry, privateKey: keys.privateKey, address };
}

type DaemonStatus = 'absent' | 'ours' | 'foreign';

/**
 * Whether IFNAME runs, and as this server: a daemon answers on its socket with this config's
 * private key ('ours'), something else holds the name ('foreign'), or nothing does.
 */
async function daemonStatus(ifname: string, config: ServerConfig | undefined): Promise<DaemonStatus> {
  if (await uapiAlive(ifname)) {
    if (config === undefined) return 'foreign';
    const { device } = await uapiGet(ifname);
    return device.privateKey !== undefined && ctEqual(device.privateKey, keyBytes(config.privateKey)) ? 'ours' : 'foreign';
  }
  return linkExists(ifname) ? 'foreign' : 'absent';
}

function foreign(ctx: Ctx): ServerError {
  return new ServerError(`interface ${ctx.opts.ifname} exists but is not this server (${ctx.paths.config}); ` +
    'stop whatever runs it, or choose another --interface');
}

const withPrefix = (a: string): string => (a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`);

function peerLines(c: ClientEntry): string[] {
  return [
    `public_key=${keyHex(c.publicKey)}`,
    ...(c.presharedKey !== undefined ? [`preshared_key=${keyHex(c.presharedKey)}`] : []),
    'replace_allowed_ips=true',
    ...c.allowedIps.map((a) => `allowed_ip=${withPrefix(a)}`),
  ];
}

const removeLines = (c: ClientEntry): string[] => [`public_key=${keyHex(c.publicKey)}`, 'remove=true'];

function deviceLines(c: ServerConfig): string[] {
  return [`private_key=${keyHex(c.privateKey)}`, `listen_port=${c.listenPort}`, 'replace_peers=true', ...c.clients.flatMap(peerLines)];
}

/** HOST:PORT that clients are told: the flag, else the kept endpoint, else this host's address. */
function clientEndpoint(ctx: Ctx, config: ServerConfig): string {
  ctx.endpoint ??= findEndpoint(ctx, config);
  return ctx.endpoint;
}

function findEndpoint(ctx: Ctx, config: ServerConfig): string {
  const given = ctx.opts.endpoint ?? config.endpoint;
  const host = given ?? detectHostAddress();
  if (host === undefined) {
    ctx.err('warning: this host has no default route, so its address is unknown: the client configuration says ' +
      'SERVER_ADDRESS; replace it, or pass --endpoint HOST (or set WG_TS_ENDPOINT)\n');
    return `SERVER_ADDRESS:${config.listenPort}`;
  }
  const e = parseEndpoint(host);
  if (typeof e === 'string') throw new ServerError(`endpoint ${host}: ${e}`);
  if (given === undefined) {
    ctx.err(`note: the endpoint given to clients is ${e.host}, this host's address on its default route; ` +
      'if clients reach the server through NAT or by a DNS name, pass --endpoint HOST\n');
  }
  return `${e.host}:${e.port ?? config.listenPort}`;
}

function printServer(ctx: Ctx, config: ServerConfig, state: string): void {
  const rows: [string, string][] = [
    ['public key', publicKeyFromPrivate(config.privateKey)],
    ['endpoint', clientEndpoint(ctx, config)],
    ['address', formatSubnet(config.address)],
    ['listen port', String(config.listenPort)],
    ['clients', config.clients.length === 0 ? 'none (wireguard-ts add-client NAME)' : config.clients.map((c) => c.name).join(', ')],
    ['config', ctx.paths.config],
  ];
  ctx.out(`${ctx.opts.ifname} ${state}\n${rows.map(([k, v]) => `  ${k.padEnd(12)}${v}\n`).join('')}`);
}

function printClientConfig(ctx: Ctx, config: ServerConfig, client: ClientEntry, privateKey: string): void {
  const address = clientAddress(config, client);
  if (address === undefined) throw new ServerError(`client ${client.name} has no address in ${formatNetwork(config.address)} (AllowedIPs = ${client.allowedIps.join(', ')})`);
  const text = formatClientConfig({
    privateKey,
    address,
    ...(client.dns !== undefined ? { dns: client.dns } : {}),
    serverPublicKey: publicKeyFromPrivate(config.privateKey),
    ...(client.presharedKey !== undefined ? { presharedKey: client.presharedKey } : {}),
    endpoint: clientEndpoint(ctx, config),
    routes: client.routes ?? DEFAULT_ROUTES,
  });
  ctx.out(text);
  if (ctx.opts.qr && ctx.tty) ctx.out('\n' + renderQr(text));
}

function age(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} days`;
}

function bytes(n: bigint): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}
