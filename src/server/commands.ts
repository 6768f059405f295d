// The server mode's commands: up, down, add-client, remove-client, list-clients, show-client,
// token. The store (src/store) is the source of truth; a command changes it in one transaction,
// rewrites the wg-quick export, and, when the daemon runs, waits until the daemon's reconciler
// has applied the change to the device (the daemon is the only writer of the device's peers,
// so a CLI change and a web change can never be applied out of order).
//
// Every command that changes state runs under the state lock (lock.ts); there is no unlocked
// path: a command that finds no state directory has nothing to change and says so.
//
// With --store postgres://... (or WG_TS_STORE) the store is a cluster's shared database: the
// state directory keeps only this node's lock and export, `up` joins the cluster (creating the
// server only if no node has), and `cluster status` lists the nodes.
//
// Output: only a client's configuration (and its QR code) and a new token ever contain a secret.
// add-client and show-client print the configuration alone on stdout (`add-client bob > bob.conf`
// gives a file wg-quick takes), everything else on stderr.
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { clusterStatus } from '../cluster/nodes.js';
import { ctEqual } from '../crypto/memory.js';
import { levelFromEnv } from '../log.js';
import { describeLocation, openStoreAt, type StoreLocation } from '../store/open.js';
import { ConflictError, monthOf, type ClientRecord, type Repository, type ServerRecord } from '../store/repository.js';
import { UapiError, uapiAlive, uapiGet } from '../uapi/client.js';
import type { PeerState } from '../uapi/types.js';
import { contains, formatIPv4, formatNetwork, formatSubnet, isLoopback } from './addresses.js';
import { clientConfigText, clientState, createClient, describeAddress, resolveEndpoint, subnetOf } from './clients.js';
import { DEFAULT_MTU } from './config.js';
import { exportConfig, importLegacyState } from './export.js';
import { keyBase64, keyBytes, newKeyPair, publicKeyFromPrivate } from './keys.js';
import { withLock } from './lock.js';
import { disableNat, enableNat, type NatState } from './nat.js';
import { DEFAULT_ADDRESS, DEFAULT_CLIENT, DEFAULT_PORT, USAGE, UsageError, parseServerArgs, type CommandName, type ServerOptions } from './options.js';
import { renderQr } from './qr.js';
import { APPLIED_META, NAT_META, SETUP_META, SETUP_TTL_MS, hashSecret, nodeKey } from './meta.js';
import { ServerError, ensureStateDir, exposureWarnings, reason, statePaths, type StatePaths } from './state.js';
import { configureLink, ipv4Forwarding, linkExists, startDaemon, stopDaemon } from './system.js';

interface Ctx {
  opts: ServerOptions;
  paths: StatePaths;
  out: (text: string) => void;
  err: (text: string) => void;
  tty: boolean;
  /** The endpoint for client configs, found once per command (its note is printed once). */
  endpoint?: string;
  store: StoreLocation;
  /** This node's name when the store is a cluster's. */
  node?: string;
}

/** How long a command waits for the running daemon to apply its change. */
const APPLY_TIMEOUT_MS = 10_000;

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
    const paths = statePaths(opts.stateDir, opts.ifname);
    const ctx: Ctx = {
      opts, paths, out, err, tty: process.stdout.isTTY === true,
      store: { ...(opts.store !== undefined ? { url: opts.store } : {}), file: paths.db },
      ...(opts.store !== undefined ? { node: opts.node ?? hostname() } : {}),
    };
    await COMMANDS[opts.command](ctx);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`wireguard-ts: ${e.message}\n`);
      return 2;
    }
    const debug = levelFromEnv(process.env.LOG_LEVEL) === 'debug';
    err(`wireguard-ts: ${(e as Error).message}\n`);
    if (!(e instanceof ServerError || e instanceof UapiError || e instanceof ConflictError) && debug) err(`${(e as Error).stack}\n`);
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
  token,
  cluster,
};

// ---- the store, under the lock ----

/** Whether there may be a server to open: a cluster's database is asked, not the disk. */
function hasState(ctx: Ctx): boolean {
  return ctx.store.url !== undefined || existsSync(ctx.paths.db) || existsSync(ctx.paths.config);
}

async function openStore(ctx: Ctx): Promise<Repository> {
  let store: Repository;
  try {
    store = await openStoreAt(ctx.store);
  } catch (err) {
    throw new ServerError(`cannot open the store ${describeLocation(ctx.store)}: ${reason(err)}; nothing was changed`);
  }
  try {
    if (ctx.store.url === undefined && (await store.getServer()) === undefined) {
      const n = await importLegacyState(store, ctx.paths);
      if (n !== undefined) ctx.err(`imported ${ctx.paths.config} (the server and ${n} client${n === 1 ? '' : 's'}) into ${ctx.paths.db}\n`);
    }
  } catch (err) {
    await store.close();
    throw err instanceof ServerError ? err : new ServerError(`cannot import ${ctx.paths.config}: ${reason(err)}; nothing was changed`);
  }
  return store;
}

/**
 * Runs `fn` under the state lock with the store of an existing server: the state directory must
 * hold one (or a wg-quick file of a version before the store, imported on the way).
 */
async function withServer<T>(ctx: Ctx, fn: (store: Repository, server: ServerRecord) => Promise<T>): Promise<T> {
  const none = (): ServerError => new ServerError(`there is no server ${ctx.opts.ifname} in ${ctx.store.url !== undefined ? describeLocation(ctx.store) : ctx.paths.dir}: run \`wireguard-ts up\` first`);
  if (!hasState(ctx)) throw none();
  if (ctx.store.url !== undefined) ensureStateDir(ctx.paths);
  for (const w of exposureWarnings(ctx.paths)) ctx.err(w + '\n');
  return withLock(ctx.paths.lock, async () => {
    const store = await openStore(ctx);
    try {
      const server = await store.getServer();
      if (server === undefined) throw none();
      return await fn(store, server);
    } finally {
      await store.close();
    }
  });
}

/** Changes the store with `change`, then the export; a failed export undoes the change. */
async function changeAndExport<T>(ctx: Ctx, store: Repository, change: () => Promise<T>, undo: (t: T) => Promise<unknown>): Promise<T> {
  let result: T;
  try {
    result = await change();
  } catch (err) {
    if (err instanceof ConflictError || err instanceof ServerError) throw err;
    throw new ServerError(`cannot change the store ${describeLocation(ctx.store)}: ${reason(err)}; nothing was changed`);
  }
  try {
    await exportConfig(store, ctx.paths);
  } catch (err) {
    await undo(result).catch(() => undefined);
    throw err;
  }
  return result;
}

// ---- commands ----

async function up(ctx: Ctx): Promise<void> {
  const { paths } = ctx;
  ensureStateDir(paths);
  for (const w of exposureWarnings(paths)) ctx.err(w + '\n');
  const created = !hasState(ctx);
  await withLock(paths.lock, async () => {
    const store = await openStore(ctx);
    try {
      await upLocked(ctx, store);
    } catch (err) {
      // A first `up` that fails leaves no half-made server behind.
      await store.close();
      if (created) for (const f of [paths.db, `${paths.db}-wal`, `${paths.db}-shm`, paths.config]) rmSync(f, { force: true });
      throw err;
    }
    await store.close();
  });
}

async function upLocked(ctx: Ctx, store: Repository): Promise<void> {
  const { opts, paths } = ctx;
  let existing = await store.getServer();
  // Assigned by one of the two branches below.
  let server!: ServerRecord;
  let first: ClientRecord | undefined;
  if (existing === undefined) {
    const made = await store.createServer(freshServer(opts));
    server = made.server;
    if (made.created) {
      first = await createClient(store, server, {
        name: opts.client ?? DEFAULT_CLIENT, ...(opts.dns !== undefined ? { dns: opts.dns } : {}), ...(opts.allowedIps !== undefined ? { routes: opts.allowedIps } : {}),
      });
    } else {
      // Another node of the cluster created the server between the read and this: its key wins.
      existing = made.server;
    }
  }
  if (existing !== undefined) {
    if ((opts.client ?? opts.dns ?? opts.allowedIps) !== undefined) {
      ctx.err('note: --client, --dns and --allowed-ips of `up` only shape the first client, made with the server; give them to add-client\n');
    }
    server = await withOverrides(store, existing, opts);
  }
  const status = await daemonStatus(opts.ifname, server.privateKey);
  if (status === 'foreign') throw foreign(ctx);
  if (status === 'ours' && existing !== undefined) {
    const changed = liveChanges(existing, server);
    if (changed.length > 0) throw new ServerError(`${opts.ifname} is already up; run \`wireguard-ts down\` first to change ${changed.join(', ')}`);
  }
  if (server !== existing) await store.saveServer(server);
  await exportConfig(store, paths);
  if (status === 'ours') {
    await printServer(ctx, store, server, 'was already up');
    return;
  }
  const setupLink = opts.web !== undefined && (await store.adminCount()) === 0 ? await newSetupToken(store) : undefined;
  // A NAT left by a daemon that was killed is removed before a new one is set.
  const natKey = nodeKey(NAT_META, ctx.node);
  const oldNat = await store.getMeta(natKey);
  if (oldNat !== undefined) {
    disableNat(JSON.parse(oldNat) as NatState);
    await store.setMeta(natKey, undefined);
  }
  await startDaemon(opts.ifname, {
    stateDir: opts.stateDir, ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    ...(ctx.store.url !== undefined ? { store: ctx.store.url, node: ctx.node! } : {}),
    ...(opts.web !== undefined ? { web: opts.web, webBehindTls: opts.webBehindTls === true } : {}),
  });
  let natSaid: string[] = [];
  try {
    configureLink(opts.ifname, subnetOf(server), server.mtu);
    if (opts.nat) {
      const nat = enableNat(opts.ifname, formatNetwork(subnetOf(server)));
      await store.setMeta(natKey, JSON.stringify(nat.state));
      natSaid = nat.said;
    }
  } catch (e) {
    await stopDaemon(opts.ifname).catch(() => undefined);
    throw e;
  }
  await printServer(ctx, store, server, 'is up');
  if (opts.web !== undefined) printWeb(ctx, setupLink);
  for (const line of natSaid) ctx.err(line + '\n');
  if (first !== undefined) {
    ctx.out(`\nFirst client "${first.name}", address ${formatIPv4(first.address!)}. Its configuration, for \`wg-quick up\` or a WireGuard app:\n\n`);
    printClientConfig(ctx, server, first);
    ctx.out('\nMore clients: wireguard-ts add-client NAME\n');
  }
  if (!opts.nat && !ipv4Forwarding()) {
    ctx.err(`note: IPv4 forwarding is off, so clients reach this server (${formatIPv4(subnetOf(server).host)}) and nothing beyond it. ` +
      `\`wireguard-ts down\` then \`up --nat\` turns on forwarding and MASQUERADE for ${formatNetwork(subnetOf(server))}\n`);
  }
}

async function newSetupToken(store: Repository): Promise<string> {
  const token = randomBytes(24).toString('base64url');
  await store.setMeta(SETUP_META, JSON.stringify({ hash: hashSecret(token), expiresAt: Date.now() + SETUP_TTL_MS }));
  return token;
}

function printWeb(ctx: Ctx, setupToken: string | undefined): void {
  const { host, port } = ctx.opts.web!;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '<this host>' : host;
  const base = `${ctx.opts.webBehindTls ? 'https' : 'http'}://${shownHost}:${port}/`;
  ctx.err(`web admin and API: ${base}\n`);
  if (setupToken !== undefined) {
    // In the fragment: browsers never send it, so it reaches no server or proxy log.
    ctx.err(`  one-time setup link (creates the administrator; valid ${SETUP_TTL_MS / 3_600_000} h): ${base}#setup=${setupToken}\n`);
  }
  if (!isLoopback(host) && !ctx.opts.webBehindTls) {
    ctx.err(`warning: the web admin listens on ${host} over plain HTTP: passwords and session cookies cross the network readable. ` +
      'Put TLS or a reverse proxy in front and say so with --web-behind-tls, or bind it to loopback and use an SSH tunnel\n');
  }
}

async function down(ctx: Ctx): Promise<void> {
  const { opts, paths } = ctx;
  if (ctx.store.url === undefined && (!existsSync(paths.dir) || !hasState(ctx))) {
    if (linkExists(opts.ifname) || (await uapiAlive(opts.ifname))) throw foreign(ctx);
    ctx.out(`${opts.ifname} is not up\n`);
    return;
  }
  await withServer(ctx, async (store, server) => {
    const status = await daemonStatus(opts.ifname, server.privateKey);
    if (status === 'foreign') throw foreign(ctx);
    const natKey = nodeKey(NAT_META, ctx.node);
    const nat = await store.getMeta(natKey);
    if (nat !== undefined) {
      for (const p of disableNat(JSON.parse(nat) as NatState)) ctx.err(`warning: removing NAT: ${p}\n`);
      await store.setMeta(natKey, undefined);
    }
    if (status === 'absent') {
      ctx.out(`${opts.ifname} is not up\n`);
      return;
    }
    await stopDaemon(opts.ifname);
    ctx.out(`${opts.ifname} is down\n`);
  });
}

async function addClient(ctx: Ctx): Promise<void> {
  const { opts } = ctx;
  await withServer(ctx, async (store, server) => {
    if ((await store.getClientByName(opts.name!)) !== undefined) throw new ServerError(`a client named ${opts.name} already exists (show-client ${opts.name} prints its configuration)`);
    const status = await daemonStatus(opts.ifname, server.privateKey);
    if (status === 'foreign') throw foreign(ctx);
    const c = await changeAndExport(ctx, store, async () => {
      try {
        return await createClient(store, server, {
          name: opts.name!, ...(opts.dns !== undefined ? { dns: opts.dns } : {}), ...(opts.allowedIps !== undefined ? { routes: opts.allowedIps } : {}),
        });
      } catch (err) {
        if (err instanceof ConflictError && err.field === 'address') {
          throw new ServerError(`no free address left in ${formatNetwork(subnetOf(server))}; remove a client, or \`down\` and \`up --address\` with a shorter prefix`);
        }
        throw err;
      }
    }, (created) => store.deleteClient(created.id));
    const live = status === 'ours' && (await applied(ctx, store));
    ctx.err(`client ${c.name} added, address ${formatIPv4(c.address!)}; ` +
      (live ? `live on ${opts.ifname}\n` : status === 'ours' ? `the daemon of ${opts.ifname} has not applied it yet\n` : `${opts.ifname} is down: it serves the client from the next \`wireguard-ts up\`\n`));
    printClientConfig(ctx, server, c);
  });
}

async function removeClient(ctx: Ctx): Promise<void> {
  const { opts } = ctx;
  await withServer(ctx, async (store, server) => {
    const client = await findClient(store, opts.name!);
    const status = await daemonStatus(opts.ifname, server.privateKey);
    if (status === 'foreign') throw foreign(ctx);
    const { id: _id, createdAt, ...kept } = client;
    await changeAndExport(ctx, store, () => store.deleteClient(client.id), () => store.createClient({ ...kept, createdAt, address: client.address ?? null }, { first: 1, last: 0, reserved: 0 }));
    const live = status === 'ours' && (await applied(ctx, store));
    ctx.err(`client ${client.name} removed${live ? ` (live on ${opts.ifname})` : ''}\n`);
  });
}

async function listClients(ctx: Ctx): Promise<void> {
  await withServer(ctx, async (store, server) => {
    const status = await daemonStatus(ctx.opts.ifname, server.privateKey);
    const live = new Map<string, PeerState>();
    if (status === 'ours') {
      for (const p of (await uapiGet(ctx.opts.ifname)).peers) live.set(keyBase64(p.publicKey), p);
    } else {
      ctx.err(`${ctx.opts.ifname} is not up${status === 'foreign' ? ' as this server' : ''}: no handshake or transfer figures\n`);
    }
    const { items } = await store.listClients({ sort: 'created' });
    const now = Date.now();
    const usage = await store.monthlyUsage(monthOf(now));
    const rows = items.map((c) => {
      const p = live.get(c.publicKey);
      const used = usage.get(c.id);
      return [
        c.name, describeAddress(c), c.publicKey,
        p === undefined ? '-' : p.lastHandshakeSec === 0 ? 'never' : `${age(now / 1000 - p.lastHandshakeSec)} ago`,
        p === undefined ? '-' : bytes(p.rxBytes), p === undefined ? '-' : bytes(p.txBytes),
        clientState(c, now, used === undefined ? 0 : used.rx + used.tx),
      ];
    });
    const table = [['NAME', 'ADDRESS', 'PUBLIC KEY', 'LATEST HANDSHAKE', 'RECEIVED', 'SENT', 'STATE'], ...rows];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    ctx.out(table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
    if (rows.length === 0) ctx.err('no clients yet: wireguard-ts add-client NAME\n');
  });
}

async function showClient(ctx: Ctx): Promise<void> {
  await withServer(ctx, async (store, server) => printClientConfig(ctx, server, await findClient(store, ctx.opts.name!)));
}

async function token(ctx: Ctx): Promise<void> {
  const { opts } = ctx;
  await withServer(ctx, async (store) => {
    if (opts.action === 'create') {
      const secret = `wgts_${randomBytes(32).toString('base64url')}`;
      await store.createToken(opts.name!, hashSecret(secret));
      ctx.out(`${secret}\n`);
      ctx.err(`token ${opts.name} created: use it as "Authorization: Bearer TOKEN"; it is shown only now (the store keeps its hash)\n`);
    } else if (opts.action === 'revoke') {
      if (!(await store.revokeToken(opts.name!, Date.now()))) throw new ServerError(`there is no active token named ${opts.name}`);
      ctx.err(`token ${opts.name} revoked\n`);
    } else {
      const rows = (await store.listTokens()).map((t) => [
        t.name, new Date(t.createdAt).toISOString(), t.lastUsedAt === undefined ? 'never' : new Date(t.lastUsedAt).toISOString(),
        t.revokedAt === undefined ? 'active' : `revoked ${new Date(t.revokedAt).toISOString()}`,
      ]);
      const table = [['NAME', 'CREATED', 'LAST USED', 'STATE'], ...rows];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      ctx.out(table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
    }
  });
}

/** Reads the nodes' heartbeats: no state directory or lock, so any host with the URL may ask. */
async function cluster(ctx: Ctx): Promise<void> {
  const store = await openStore(ctx);
  try {
    const now = Date.now();
    const rows = (await clusterStatus(store, now)).map((n) => [
      n.name, n.up ? 'up' : 'down', String(n.peers), String(n.online), bytes(BigInt(n.rx)), bytes(BigInt(n.tx)), String(n.lag),
      `${age((now - n.heartbeatAt) / 1000)} ago`,
    ]);
    const table = [['NODE', 'STATE', 'PEERS', 'SEEN', 'RECEIVED', 'SENT', 'FEED LAG', 'HEARTBEAT'], ...rows];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    ctx.out(table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n');
    if (rows.length === 0) ctx.err('no node has started on this store yet: wireguard-ts up --store URL\n');
  } finally {
    await store.close();
  }
}

// ---- the pieces ----

async function findClient(store: Repository, name: string): Promise<ClientRecord> {
  const c = await store.getClientByName(name);
  if (c === undefined) throw new ServerError(`there is no client named ${name} (list-clients shows them)`);
  return c;
}

/** Waits until the running daemon has applied every change of the store; false on timeout. */
async function applied(ctx: Ctx, store: Repository): Promise<boolean> {
  const target = await store.lastChange();
  const deadline = Date.now() + APPLY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (Number((await store.getMeta(nodeKey(APPLIED_META, ctx.node))) ?? 0) >= target) return true;
    if (!(await uapiAlive(ctx.opts.ifname))) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

function freshServer(o: ServerOptions): ServerRecord {
  return {
    privateKey: newKeyPair().privateKey,
    address: o.address !== undefined ? formatSubnet(o.address) : DEFAULT_ADDRESS,
    listenPort: o.port ?? DEFAULT_PORT,
    mtu: o.mtu ?? DEFAULT_MTU,
    ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
    extra: [],
    createdAt: Date.now(),
  };
}

/** `existing` with the flags of `up` applied; the same object when no flag changes anything. */
export async function withOverrides(store: Repository, existing: ServerRecord, o: ServerOptions): Promise<ServerRecord> {
  const s = { ...existing };
  if (o.port !== undefined) s.listenPort = o.port;
  if (o.mtu !== undefined) s.mtu = o.mtu;
  if (o.endpoint !== undefined) s.endpoint = o.endpoint;
  if (o.address !== undefined && formatSubnet(o.address) !== existing.address) {
    const address = o.address;
    for (const c of (await store.listClients({})).items) {
      const a = c.address;
      if (a !== undefined && (!contains(address, a) || a === address.host)) {
        throw new UsageError(`--address: client ${c.name} has ${formatIPv4(a)}, which ${a === address.host ? 'is' : 'is outside'} ${formatSubnet(address)}; remove that client first or pick another address`);
      }
    }
    s.address = formatSubnet(address);
  }
  const same = s.listenPort === existing.listenPort && s.mtu === existing.mtu && s.endpoint === existing.endpoint && s.address === existing.address;
  return same ? existing : s;
}

/** What `up` cannot change on a running daemon without a restart. */
function liveChanges(a: ServerRecord, b: ServerRecord): string[] {
  const changed: string[] = [];
  if (a.listenPort !== b.listenPort) changed.push(`--port (now ${a.listenPort})`);
  if (a.address !== b.address) changed.push(`--address (now ${a.address})`);
  if (a.mtu !== b.mtu) changed.push(`--mtu (now ${a.mtu})`);
  return changed;
}

type DaemonStatus = 'absent' | 'ours' | 'foreign';

/**
 * Whether IFNAME runs, and as this server: a daemon answers on its socket with this server's
 * private key ('ours'), something else holds the name ('foreign'), or nothing does.
 */
async function daemonStatus(ifname: string, privateKey: string | undefined): Promise<DaemonStatus> {
  if (await uapiAlive(ifname)) {
    if (privateKey === undefined) return 'foreign';
    const { device } = await uapiGet(ifname);
    return device.privateKey !== undefined && ctEqual(device.privateKey, keyBytes(privateKey)) ? 'ours' : 'foreign';
  }
  return linkExists(ifname) ? 'foreign' : 'absent';
}

function foreign(ctx: Ctx): ServerError {
  return new ServerError(`interface ${ctx.opts.ifname} exists but is not this server (${ctx.paths.db}); ` +
    'stop whatever runs it, or choose another --interface');
}

/** HOST:PORT that clients are told, found once per command. */
function clientEndpoint(ctx: Ctx, server: ServerRecord): string {
  if (ctx.endpoint === undefined) {
    const r = resolveEndpoint(ctx.opts.endpoint !== undefined ? { ...server, endpoint: ctx.opts.endpoint } : server);
    if (r.note !== undefined) ctx.err(r.note + '\n');
    ctx.endpoint = r.endpoint;
  }
  return ctx.endpoint;
}

async function printServer(ctx: Ctx, store: Repository, server: ServerRecord, state: string): Promise<void> {
  const { total, items } = await store.listClients({ sort: 'created', limit: 10 });
  const names = items.map((c) => c.name).join(', ') + (total > items.length ? ` and ${total - items.length} more` : '');
  const rows: [string, string][] = [
    ['public key', publicKeyFromPrivate(server.privateKey)],
    ['endpoint', clientEndpoint(ctx, server)],
    ['address', server.address],
    ['listen port', String(server.listenPort)],
    ['clients', total === 0 ? 'none (wireguard-ts add-client NAME)' : names],
    ['store', describeLocation(ctx.store)],
    ...(ctx.node !== undefined ? [['node', ctx.node] as [string, string]] : []),
    ['config', `${ctx.paths.config} (wg-quick export)`],
  ];
  ctx.out(`${ctx.opts.ifname} ${state}\n${rows.map(([k, v]) => `  ${k.padEnd(12)}${v}\n`).join('')}`);
}

function printClientConfig(ctx: Ctx, server: ServerRecord, client: ClientRecord): void {
  const text = clientConfigText(server, client, clientEndpoint(ctx, server));
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
