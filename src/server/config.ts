// The server's configuration as a wg-quick file (`wg-quick up /var/lib/wireguard-ts/wg0.conf`
// reads it as it is), and the configuration printed for a client. What wg-quick has no key for
// (a client's name, the endpoint to print, a client's own DNS and AllowedIPs) is kept in
// "# Key = value" comments, which wg-quick ignores. Lines this file does not manage (PostUp,
// Table, a hand-written comment...) are kept in place so a hand edit survives a rewrite.
//
// Nothing here touches the file system: parse text, write text.
import { contains, formatIPv4, formatSubnet, isCidr, isDomain, isIP, parseEndpoint, parseIPv4, parseServerAddress, shown, type Subnet4 } from './addresses.js';
import { isBase64Key } from './keys.js';

export interface ClientEntry {
  name: string;
  publicKey: string;
  presharedKey?: string;
  /** The server side's AllowedIPs of this peer: the client's /32 first. */
  allowedIps: string[];
  /** DNS of the client's own config (wg-quick DNS), when given. */
  dns?: string[];
  /** AllowedIPs of the client's own config, when not the default (all traffic). */
  routes?: string[];
  extra: string[];
}

export interface ServerConfig {
  privateKey: string;
  address: Subnet4;
  listenPort: number;
  mtu: number;
  /** The endpoint clients are told, when one was given (HOST or HOST:PORT). */
  endpoint?: string;
  clients: ClientEntry[];
  extra: string[];
}

export const DEFAULT_MTU = 1420;
/** IPv6 inside the tunnel needs 1280; jumbo frames end around 9000. */
export const MIN_MTU = 1280;
export const MAX_MTU = 9000;
export const DEFAULT_ROUTES = ['0.0.0.0/0', '::/0'];
export const PERSISTENT_KEEPALIVE = 25;

export class ConfigError extends Error {}

/**
 * What is wrong with a client name, or undefined when it is fine. Names become file names in
 * the state directory, so they are kept to a portable set.
 */
export const CLIENT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$';

export function clientNameProblem(name: string): string | undefined {
  if (new RegExp(CLIENT_NAME_PATTERN).test(name)) return undefined;
  return `${shown(name)} is not a client name (1-32 letters, digits, '.', '_' or '-', starting with a letter or digit)`;
}

const HEADER = [
  '# wireguard-ts server configuration, a wg-quick file: `wg-quick up` can read it as it is.',
  '# The "# Name", "# Endpoint", "# ClientDNS" and "# ClientAllowedIPs" comments are',
  "# wireguard-ts's own settings; keep them when editing by hand.",
];

const list = (v: string): string[] => v.split(',').map((x) => x.trim()).filter((x) => x !== '');

export function formatServerConfig(c: ServerConfig): string {
  const out = [...HEADER, '[Interface]'];
  if (c.endpoint !== undefined) out.push(`# Endpoint = ${c.endpoint}`);
  out.push(`PrivateKey = ${c.privateKey}`, `Address = ${formatSubnet(c.address)}`, `ListenPort = ${c.listenPort}`, `MTU = ${c.mtu}`, ...c.extra);
  for (const p of c.clients) {
    out.push('', '[Peer]', `# Name = ${p.name}`);
    if (p.dns !== undefined) out.push(`# ClientDNS = ${p.dns.join(', ')}`);
    if (p.routes !== undefined) out.push(`# ClientAllowedIPs = ${p.routes.join(', ')}`);
    out.push(`PublicKey = ${p.publicKey}`);
    if (p.presharedKey !== undefined) out.push(`PresharedKey = ${p.presharedKey}`);
    out.push(`AllowedIPs = ${p.allowedIps.join(', ')}`, ...p.extra);
  }
  return out.join('\n') + '\n';
}

/** Parses a file written by formatServerConfig (or hand-edited); throws ConfigError naming the line. */
export function parseServerConfig(text: string, file: string): ServerConfig {
  let section: 'none' | 'interface' | 'peer' = 'none';
  const iface: Partial<ServerConfig> & { extra: string[] } = { extra: [] };
  const clients: (Partial<ClientEntry> & { extra: string[]; line: number })[] = [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const fail = (msg: string): never => {
      throw new ConfigError(`${where}: ${msg}`);
    };
    const line = raw.trim();
    if (/^\[interface\]$/i.test(line)) {
      if (section !== 'none') fail('[Interface] must come first and only once');
      section = 'interface';
      return;
    }
    if (/^\[peer\]$/i.test(line)) {
      if (section === 'none') fail('[Peer] before [Interface]');
      section = 'peer';
      clients.push({ extra: [], line: i + 1 });
      return;
    }
    const meta = /^#\s*([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    const key = (meta ?? kv)?.[1]!.toLowerCase();
    const value = (meta ?? kv)?.[2]!.replace(/\s*#.*$/, '').trim() ?? '';
    if (section === 'interface') {
      if (meta && key === 'endpoint') {
        const e = parseEndpoint(value);
        iface.endpoint = typeof e === 'string' ? fail(`Endpoint: ${e}`) : value;
      } else if (kv && key === 'privatekey') iface.privateKey = isBase64Key(value) ? value : fail('PrivateKey is not a base64 key');
      else if (kv && key === 'address') {
        const a = parseServerAddress(value);
        iface.address = typeof a === 'string' ? fail(`Address: ${a}`) : a;
      } else if (kv && key === 'listenport') iface.listenPort = /^\d{1,5}$/.test(value) && +value >= 1 && +value <= 65535 ? +value : fail(`ListenPort: ${shown(value)} is not a port number (1-65535)`);
      else if (kv && key === 'mtu') iface.mtu = /^\d{4}$/.test(value) && +value >= MIN_MTU && +value <= MAX_MTU ? +value : fail(`MTU: ${shown(value)} is not an MTU (${MIN_MTU}-${MAX_MTU})`);
      else if (line !== '' && !HEADER.includes(line)) iface.extra.push(raw);
    } else if (section === 'peer') {
      const p = clients.at(-1)!;
      if (meta && key === 'name') p.name = value;
      else if (meta && key === 'clientdns') p.dns = list(value).every((x) => isIP(x) || isDomain(x)) ? list(value) : fail(`ClientDNS: ${shown(value)} is not a list of IP addresses or domain names`);
      else if (meta && key === 'clientallowedips') p.routes = list(value).every(isCidr) ? list(value) : fail(`ClientAllowedIPs: ${shown(value)} is not a list of prefixes`);
      else if (kv && key === 'publickey') p.publicKey = isBase64Key(value) ? value : fail('PublicKey is not a base64 key');
      else if (kv && key === 'presharedkey') p.presharedKey = isBase64Key(value) ? value : fail('PresharedKey is not a base64 key');
      else if (kv && key === 'allowedips') p.allowedIps = list(value).every(isCidr) ? list(value) : fail(`AllowedIPs: ${shown(value)} is not a list of prefixes`);
      else if (line !== '') p.extra.push(raw);
    } else if (line !== '' && !line.startsWith('#')) {
      fail('text before [Interface]');
    }
  });
  const missing = (what: string): never => {
    throw new ConfigError(`${file}: [Interface] has no ${what}`);
  };
  const config: ServerConfig = {
    privateKey: iface.privateKey ?? missing('PrivateKey'),
    address: iface.address ?? missing('Address'),
    listenPort: iface.listenPort ?? missing('ListenPort'),
    mtu: iface.mtu ?? DEFAULT_MTU,
    ...(iface.endpoint !== undefined ? { endpoint: iface.endpoint } : {}),
    extra: iface.extra,
    clients: [],
  };
  for (const p of clients) {
    const where = `${file}:${p.line}`;
    if (p.name === undefined) throw new ConfigError(`${where}: [Peer] without a "# Name = ..." comment (wireguard-ts names every client)`);
    const bad = clientNameProblem(p.name);
    if (bad !== undefined) throw new ConfigError(`${where}: ${bad}`);
    if (p.publicKey === undefined) throw new ConfigError(`${where}: [Peer] ${p.name} has no PublicKey`);
    if (config.clients.some((c) => c.name === p.name)) throw new ConfigError(`${where}: a second client named ${p.name}`);
    const { line: _line, ...entry } = p;
    config.clients.push({ ...entry, name: p.name, publicKey: p.publicKey, allowedIps: p.allowedIps ?? [] });
  }
  return config;
}

/** A client's tunnel address: the first /32 of its AllowedIPs inside the server's subnet. */
export function clientAddress(config: ServerConfig, client: ClientEntry): number | undefined {
  for (const a of client.allowedIps) {
    const m = /^([\d.]+)(?:\/32)?$/.exec(a);
    const n = m ? parseIPv4(m[1]!) : null;
    if (n !== null && contains(config.address, n)) return n;
  }
  return undefined;
}

export interface ClientConfigInput {
  privateKey: string;
  address: number;
  dns?: string[];
  serverPublicKey: string;
  presharedKey?: string;
  endpoint: string;
  routes: string[];
}

/** The client's side, ready for `wg-quick up` or a WireGuard app's import (or its QR scanner). */
export function formatClientConfig(c: ClientConfigInput): string {
  const out = ['[Interface]', `PrivateKey = ${c.privateKey}`, `Address = ${formatIPv4(c.address)}/32`];
  if (c.dns !== undefined && c.dns.length > 0) out.push(`DNS = ${c.dns.join(', ')}`);
  out.push('', '[Peer]', `PublicKey = ${c.serverPublicKey}`);
  if (c.presharedKey !== undefined) out.push(`PresharedKey = ${c.presharedKey}`);
  out.push(`Endpoint = ${c.endpoint}`, `AllowedIPs = ${c.routes.join(', ')}`, `PersistentKeepalive = ${PERSISTENT_KEEPALIVE}`);
  return out.join('\n') + '\n';
}
