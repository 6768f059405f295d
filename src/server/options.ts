// Command line of the server mode, through node:util parseArgs. Every default can be overridden
// by a flag or an environment variable (the flag wins); each value is validated before anything
// is done, and a bad one is refused with a message that names the flag or variable it came from.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isValidName } from '../tun/tun.js';
import { isPostgresUrl } from '../store/postgres.js';
import { parseListen, type MetricsListen } from '../metrics/server.js';
import { isCidr, isDomain, isIP, parseEndpoint, parseServerAddress, shown, type Subnet4 } from './addresses.js';
import { DEFAULT_MTU, MAX_MTU, MIN_MTU, clientNameProblem } from './config.js';
import { DEFAULT_STATE_DIR } from './state.js';

export const COMMANDS = ['up', 'down', 'add-client', 'remove-client', 'list-clients', 'show-client', 'token', 'cluster'] as const;
export type CommandName = (typeof COMMANDS)[number];
export const TOKEN_ACTIONS = ['create', 'list', 'revoke'] as const;
export type TokenAction = (typeof TOKEN_ACTIONS)[number];
export const CLUSTER_ACTIONS = ['status'] as const;

export const DEFAULT_INTERFACE = 'wg0';
export const DEFAULT_PORT = 51820;
export const DEFAULT_ADDRESS = '10.8.0.1/24';
export const DEFAULT_CLIENT = 'client1';

/** A mistake in the command line or environment: printed as is, exit status 2. */
export class UsageError extends Error {}

export interface ServerOptions {
  command: CommandName;
  /** The NAME of add-client, remove-client, show-client, token create/revoke. */
  name?: string;
  /** The action of `token` (`cluster` has only `status`). */
  action?: TokenAction | 'status';
  ifname: string;
  stateDir: string;
  port?: number;
  address?: Subnet4;
  mtu?: number;
  workers?: number;
  /** "HOST" or "HOST:PORT", IPv6 hosts in brackets. */
  endpoint?: string;
  dns?: string[];
  allowedIps?: string[];
  /** Name of the first client (up). */
  client?: string;
  qr: boolean;
  /** Where the web admin and HTTP API listen (up --web). */
  web?: MetricsListen;
  /** TLS or a reverse proxy is in front of a web page bound to a non-loopback address. */
  webBehindTls?: boolean;
  /** Forwarding and MASQUERADE for the client subnet (up --nat). */
  nat?: boolean;
  /** postgres://... of a cluster's shared store; absent: the SQLite file in the state directory. */
  store?: string;
  /** This node's name in a cluster. */
  node?: string;
}

type Field = keyof Omit<ServerOptions, 'command' | 'name' | 'action' | 'qr'> | 'noQr';

interface Spec {
  field: Field;
  flag: string;
  env: string;
  arg?: string;
  commands: readonly CommandName[];
  help: string;
}

const CLIENT_CONFIG: CommandName[] = ['up', 'add-client', 'show-client'];
const SPECS: Spec[] = [
  { field: 'ifname', flag: '--interface', env: 'WG_TS_INTERFACE', arg: 'NAME', commands: COMMANDS, help: `interface name (${DEFAULT_INTERFACE})` },
  { field: 'stateDir', flag: '--state-dir', env: 'WG_TS_STATE_DIR', arg: 'DIR', commands: COMMANDS, help: `store, keys and wg-quick export (${DEFAULT_STATE_DIR})` },
  { field: 'port', flag: '--port', env: 'WG_TS_PORT', arg: 'N', commands: ['up'], help: `UDP listen port (${DEFAULT_PORT})` },
  { field: 'address', flag: '--address', env: 'WG_TS_ADDRESS', arg: 'CIDR', commands: ['up'], help: `server tunnel address and client subnet (${DEFAULT_ADDRESS})` },
  { field: 'mtu', flag: '--mtu', env: 'WG_TS_MTU', arg: 'N', commands: ['up'], help: `interface MTU (${DEFAULT_MTU})` },
  { field: 'workers', flag: '--workers', env: 'WG_TS_WORKERS', arg: 'N', commands: ['up'], help: 'data-plane worker threads (one per CPU)' },
  { field: 'client', flag: '--client', env: 'WG_TS_CLIENT', arg: 'NAME', commands: ['up'], help: `name of the first client (${DEFAULT_CLIENT})` },
  { field: 'endpoint', flag: '--endpoint', env: 'WG_TS_ENDPOINT', arg: 'HOST[:PORT]', commands: CLIENT_CONFIG, help: "server address in client configs (the default route's source address); `up` keeps it" },
  { field: 'dns', flag: '--dns', env: 'WG_TS_DNS', arg: 'LIST', commands: ['up', 'add-client'], help: 'DNS servers for the client config (none)' },
  { field: 'allowedIps', flag: '--allowed-ips', env: 'WG_TS_ALLOWED_IPS', arg: 'LIST', commands: ['up', 'add-client'], help: 'what the client routes into the tunnel (0.0.0.0/0, ::/0)' },
  { field: 'noQr', flag: '--no-qr', env: 'WG_TS_NO_QR', commands: CLIENT_CONFIG, help: 'no QR code (it is only printed on a terminal anyway)' },
  { field: 'web', flag: '--web', env: 'WG_TS_WEB', arg: '[ADDR:]PORT', commands: ['up'], help: 'web admin and HTTP API (loopback unless ADDR is given; off)' },
  { field: 'webBehindTls', flag: '--web-behind-tls', env: 'WG_TS_WEB_BEHIND_TLS', commands: ['up'], help: 'TLS or a reverse proxy is in front of --web (secure cookies, no warning)' },
  { field: 'store', flag: '--store', env: 'WG_TS_STORE', arg: 'URL', commands: COMMANDS, help: 'postgres://USER:PASSWORD@HOST/DB shared by the nodes of a cluster (the SQLite file in the state directory)' },
  { field: 'node', flag: '--node', env: 'WG_TS_NODE', arg: 'NAME', commands: COMMANDS, help: "this node's name in a cluster (the host name)" },
  { field: 'nat', flag: '--nat', env: 'WG_TS_NAT', commands: ['up'], help: 'turn on forwarding and MASQUERADE for the client subnet (removed by down)' },
];

export const USAGE = `Usage: wireguard-ts COMMAND [options]
  up                  start the VPN server; the first time, create it and a first client
  down                stop the server
  add-client NAME     add a client live and print its configuration and QR code
  remove-client NAME  remove a client live
  list-clients        clients with state, last handshake and transfer
  show-client NAME    print a client's configuration again
  token create NAME   a bearer token for the HTTP API, printed once (stored hashed)
  token list          tokens and when they were last used
  token revoke NAME   revoke a token at once
  cluster status      the nodes sharing --store: up or down, peers, traffic, feed lag
  wireguard-ts [-f] [--workers N] INTERFACE   the bare daemon, as wg-quick runs it
  wireguard-ts --version

Options (environment variable; default):
${SPECS.map((s) => `  ${`${s.flag}${s.arg ? ' ' + s.arg : ''}`.padEnd(23)} ${s.env}; ${s.help}`).join('\n')}
`;

export function isServerCommand(arg: string | undefined): boolean {
  return arg === 'help' || (COMMANDS as readonly string[]).includes(arg ?? '');
}

const PARSE_OPTIONS = Object.fromEntries([
  ...SPECS.map((s) => [s.flag.slice(2), { type: s.arg === undefined ? 'boolean' : 'string' }] as const),
  ['help', { type: 'boolean', short: 'h' }] as const,
]);

/** Parses `argv` (after the program name) and `env`; throws UsageError. Returns 'help' for help. */
export function parseServerArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ServerOptions | 'help' {
  const [command, ...rest] = argv;
  if (command === 'help') return 'help';
  if (!(COMMANDS as readonly string[]).includes(command ?? '')) throw new UsageError(`unknown command ${shown(command ?? '')}\n${USAGE}`);
  const cmd = command as CommandName;
  // Not strict: parseArgs reports through tokens, and the checks below word each mistake.
  const { tokens } = parseArgs({ args: [...rest], options: PARSE_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const raw = new Map<Field, { value: string; from: string }>();
  for (const s of SPECS) {
    const v = env[s.env];
    if (s.commands.includes(cmd) && v !== undefined && v !== '') raw.set(s.field, { value: v, from: s.env });
  }
  const positional: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') positional.push(t.value);
    if (t.kind !== 'option') continue;
    if (t.name === 'help') return 'help';
    const s = SPECS.find((x) => x.flag === t.rawName);
    if (s === undefined) throw new UsageError(`unknown option ${t.rawName} (wireguard-ts help lists them)`);
    if (!s.commands.includes(cmd)) throw new UsageError(`${t.rawName} does not apply to ${cmd}`);
    if (s.arg === undefined && t.inlineValue) throw new UsageError(`${t.rawName} takes no value`);
    if (s.arg !== undefined && t.value === undefined) throw new UsageError(`${t.rawName} needs a value (${s.arg})`);
    raw.set(s.field, { value: t.value ?? '1', from: t.rawName });
  }

  const opts: ServerOptions = { command: cmd, ifname: DEFAULT_INTERFACE, stateDir: DEFAULT_STATE_DIR, qr: true };
  let names = positional;
  if (cmd === 'token' || cmd === 'cluster') {
    const actions: readonly string[] = cmd === 'token' ? TOKEN_ACTIONS : CLUSTER_ACTIONS;
    const action = positional[0];
    if (!actions.includes(action ?? '')) throw new UsageError(`${cmd} needs an action: ${actions.join(', ')}`);
    opts.action = action as TokenAction | 'status';
    names = positional.slice(1);
  }
  const takesName = cmd === 'add-client' || cmd === 'remove-client' || cmd === 'show-client' || (cmd === 'token' && opts.action !== 'list');
  const what = cmd === 'token' || cmd === 'cluster' ? `${cmd} ${opts.action}` : cmd;
  if (names.length > (takesName ? 1 : 0)) throw new UsageError(`unexpected argument ${shown(names.at(-1)!)}`);
  if (takesName && names.length === 0) throw new UsageError(`${what} needs a ${cmd === 'token' ? 'token' : 'client'} NAME`);
  if (takesName) opts.name = checkName(names[0]!, what);
  for (const [field, { value, from }] of raw) apply(opts, field, value.trim(), from);
  if (cmd === 'cluster' && opts.store === undefined) throw new UsageError('cluster status needs the cluster\'s --store (or WG_TS_STORE)');
  return opts;
}

function checkName(name: string, from: string): string {
  const bad = clientNameProblem(name);
  if (bad !== undefined) throw new UsageError(`${from}: ${bad}`);
  return name;
}

function apply(o: ServerOptions, field: Field, v: string, from: string): void {
  const fail = (what: string): never => {
    throw new UsageError(`${from}: ${what}`);
  };
  const int = (min: number, max: number, what: string): number => (/^\d{1,6}$/.test(v) && +v >= min && +v <= max ? +v : fail(`${shown(v)} is not ${what} (${min}-${max})`));
  const flag = (): boolean => !/^(0|false|no)$/i.test(v);
  switch (field) {
    case 'ifname':
      o.ifname = isValidName(v) ? v : fail(`${shown(v)} is not an interface name (1-15 characters without spaces, '/', ':' or '%')`);
      return;
    case 'stateDir':
      o.stateDir = v !== '' ? resolve(v) : fail('empty path');
      return;
    case 'port':
      o.port = int(1, 65535, 'a port number');
      return;
    case 'address': {
      const a = parseServerAddress(v);
      o.address = typeof a === 'string' ? fail(a) : a;
      return;
    }
    case 'mtu':
      o.mtu = int(MIN_MTU, MAX_MTU, 'an MTU');
      return;
    case 'workers':
      o.workers = int(1, 64, 'a number of workers');
      return;
    case 'client':
      o.client = checkName(v, from);
      return;
    case 'endpoint': {
      const e = parseEndpoint(v);
      o.endpoint = typeof e === 'string' ? fail(e) : e.port === undefined ? e.host : `${e.host}:${e.port}`;
      return;
    }
    case 'dns':
      o.dns = list(v, from, (x) => isIP(x) || isDomain(x), 'an IP address or a domain name');
      return;
    case 'allowedIps':
      o.allowedIps = list(v, from, isCidr, 'an IP prefix like 10.0.0.0/8 or ::/0');
      return;
    case 'noQr':
      o.qr = !flag();
      return;
    case 'web': {
      const l = parseListen(v);
      o.web = typeof l === 'string' ? fail(`${shown(v)} is not [ADDR:]PORT with an IP address (8080, 0.0.0.0:8080, [::1]:8080)`) : l;
      return;
    }
    case 'webBehindTls':
      o.webBehindTls = flag();
      return;
    case 'nat':
      o.nat = flag();
      return;
    case 'store':
      // The value is never echoed: it may hold the database password.
      o.store = isPostgresUrl(v) ? v : fail('not a postgres:// or postgresql:// URL');
      return;
    case 'node':
      o.node = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(v) ? v : fail(`${shown(v)} is not a node name (letters, digits, '.', '_', '-', up to 63)`);
      return;
  }
}

function list(v: string, from: string, ok: (x: string) => boolean, what: string): string[] {
  const items = v.split(',').map((x) => x.trim());
  if (items.every((x) => x === '')) throw new UsageError(`${from}: empty list`);
  const bad = items.find((x) => !ok(x));
  if (bad !== undefined) throw new UsageError(`${from}: ${shown(bad)} is not ${what}`);
  return items;
}
