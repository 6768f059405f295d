// Addresses of the server mode: its IPv4 subnet and the allocation of client tunnel addresses
// (the server holds one address of its subnet, 10.8.0.1/24 by default, each client gets a /32
// from the rest, lowest free first, so an address freed by remove-client is handed out again),
// and the forms of the other values that name a place: prefixes, DNS servers, the endpoint.
import { isIPv6 } from 'node:net';

export interface Subnet4 {
  /** The server's own address, as a 32-bit unsigned number. */
  host: number;
  prefix: number;
}

/** Smallest subnet with room for the server and one client: network, server, client, broadcast. */
export const MAX_PREFIX = 30;
/** Larger subnets than a /8 are not a VPN's business and would make a full scan silly. */
export const MIN_PREFIX = 8;

/** Dotted quad to number; null unless exactly four decimal parts 0-255 without leading zeros. */
export function parseIPv4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return null;
    n = n * 256 + Number(p);
  }
  return n;
}

/** A value as a message shows it: bare when it is one printable word, quoted otherwise. */
export function shown(v: string): string {
  return /^[\x21-\x7e]+$/.test(v) && !v.includes('"') ? v : JSON.stringify(v);
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function network(s: Subnet4): number {
  return (s.host & mask(s.prefix)) >>> 0;
}

export function broadcast(s: Subnet4): number {
  return (network(s) | ~mask(s.prefix)) >>> 0;
}

export function contains(s: Subnet4, addr: number): boolean {
  return ((addr & mask(s.prefix)) >>> 0) === network(s);
}

export function formatSubnet(s: Subnet4): string {
  return `${formatIPv4(s.host)}/${s.prefix}`;
}

/** The subnet itself, as a route reads: "10.8.0.0/24". */
export function formatNetwork(s: Subnet4): string {
  return `${formatIPv4(network(s))}/${s.prefix}`;
}

/**
 * The server's address in CIDR form ("10.8.0.1/24"); a string saying what is wrong otherwise
 * (the caller prefixes the field name).
 */
export function parseServerAddress(s: string): Subnet4 | string {
  const m = /^([^/]+)\/([1-9]?\d)$/.exec(s);
  const host = m ? parseIPv4(m[1]!) : null;
  if (!m || host === null) return `${shown(s)} is not an IPv4 address with a prefix length, like 10.8.0.1/24`;
  const prefix = Number(m[2]);
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX) return `${s}: the prefix length must be from ${MIN_PREFIX} to ${MAX_PREFIX}, so the subnet has room for clients`;
  const subnet = { host, prefix };
  if (host === network(subnet)) return `${s} is the subnet's network address; give the server's own address, like ${formatIPv4(host + 1)}/${prefix}`;
  if (host === broadcast(subnet)) return `${s} is the subnet's broadcast address; give the server's own address, like ${formatIPv4(network(subnet) + 1)}/${prefix}`;
  return subnet;
}

/** The lowest address of the subnet that is neither network, broadcast, the server's nor used. */
export function nextFreeAddress(s: Subnet4, used: Iterable<number>): number | undefined {
  const taken = new Set(used);
  taken.add(s.host);
  for (let a = network(s) + 1; a < broadcast(s); a++) {
    if (!taken.has(a)) return a;
  }
  return undefined;
}

/** An IPv4 or IPv6 prefix as wg-quick's AllowedIPs takes it ("0.0.0.0/0", "fd00::/64", "10.0.0.1"). */
export function isCidr(s: string): boolean {
  const m = /^([^/%]+)(?:\/(0|[1-9]\d{0,2}))?$/.exec(s);
  if (!m) return false;
  const v4 = parseIPv4(m[1]!) !== null;
  if (!v4 && !isIPv6(m[1]!)) return false;
  return m[2] === undefined || Number(m[2]) <= (v4 ? 32 : 128);
}

export const isIP = (s: string): boolean => parseIPv4(s) !== null || (isIPv6(s) && !s.includes('%'));

export function isDomain(s: string): boolean {
  if (/^[\d.]+$/.test(s)) return false; // looks like a (bad) IPv4 address, not a name
  return s.length <= 253 && /^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(s);
}

/** HOST, HOST:PORT, [IPv6] or [IPv6]:PORT, or a bare IPv6 address; a message when malformed. */
export function parseEndpoint(s: string): { host: string; port?: number } | string {
  let host: string;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(s);
  if (bracketed) {
    if (!isIPv6(bracketed[1]!) || bracketed[1]!.includes('%')) return `${shown(s)}: ${shown(bracketed[1]!)} is not an IPv6 address`;
    host = `[${bracketed[1]}]`;
    port = bracketed[2];
  } else if (isIPv6(s)) {
    return { host: `[${s}]` };
  } else {
    const colon = s.lastIndexOf(':');
    host = colon < 0 ? s : s.slice(0, colon);
    port = colon < 0 ? undefined : s.slice(colon + 1);
    if (parseIPv4(host) === null && !isDomain(host)) {
      return `${shown(s)} is not HOST or HOST:PORT (HOST: an IPv4 address, [IPv6 address] or DNS name)`;
    }
  }
  if (port === undefined) return { host };
  if (!/^\d{1,5}$/.test(port) || +port < 1 || +port > 65535) return `${shown(port)} is not a port number (1-65535)`;
  return { host, port: +port };
}

/** Whether a listen address is reachable from this host only. */
export function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}
