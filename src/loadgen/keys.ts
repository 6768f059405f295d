// The load generator's clients: a static key pair and a tunnel address each. They live in a keys
// file, one client a line ("PRIVATE-KEY ADDRESS", base64 as `wg genkey` prints it), written once
// with mode 0600 so every run and the server's configuration agree on them; the server learns
// them from a `wg addconf` snippet (one [Peer] per client, AllowedIPs its /32) or `wg set` args.
import { KEY_LEN, generateKeyPair, publicKeyOf } from '../crypto/x25519.js';
import { zero } from '../crypto/memory.js';
import { broadcast, formatIPv4, network, parseIPv4, type Subnet4 } from '../server/addresses.js';
import { isBase64Key, keyBase64, keyBytes } from '../server/keys.js';

export interface ClientKey {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
  /** The client's tunnel IPv4 address as a 32-bit unsigned number. */
  tunnel: number;
}

/** How many clients fit in the subnet beside the server: network, broadcast and the server's address excluded. */
export function subnetCapacity(s: Subnet4): number {
  return broadcast(s) - network(s) - 2;
}

/** The tunnel address of client `i`: the subnet's addresses in order, the server's own skipped. */
export function clientAddress(s: Subnet4, i: number): number {
  const a = network(s) + 1 + i;
  return a >= s.host ? a + 1 : a;
}

/** `count` fresh clients numbered through `subnet` (the server's address in CIDR form). */
export function generateClients(count: number, subnet: Subnet4): ClientKey[] {
  if (count > subnetCapacity(subnet)) throw new RangeError(`${count} clients do not fit in /${subnet.prefix}`);
  return Array.from({ length: count }, (_, i) => {
    const privateKey = new Uint8Array(KEY_LEN);
    const publicKey = new Uint8Array(KEY_LEN);
    generateKeyPair(privateKey, publicKey);
    return { privateKey, publicKey, tunnel: clientAddress(subnet, i) };
  });
}

const KEYS_FILE_HEADER = '# wireguard-ts loadgen clients: private key, tunnel address. Secret: keep it 0600.';

export function formatKeysFile(clients: readonly ClientKey[]): string {
  return [KEYS_FILE_HEADER, ...clients.map((c) => `${keyBase64(c.privateKey)} ${formatIPv4(c.tunnel)}`)].join('\n') + '\n';
}

/** Parses a keys file; throws an Error naming the first bad line. Blank lines and # comments are skipped. */
export function parseKeysFile(text: string): ClientKey[] {
  const clients: ClientKey[] = [];
  const seen = new Set<number>();
  text.split('\n').forEach((raw, n) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [key, addr, extra] = line.split(/\s+/);
    const tunnel = addr === undefined ? null : parseIPv4(addr);
    if (!isBase64Key(key!) || tunnel === null || extra !== undefined) {
      throw new Error(`line ${n + 1}: expected "PRIVATE-KEY ADDRESS" (a base64 key and an IPv4 address)`);
    }
    if (seen.has(tunnel)) throw new Error(`line ${n + 1}: tunnel address ${addr} is used twice`);
    seen.add(tunnel);
    const privateKey = keyBytes(key!);
    const publicKey = new Uint8Array(KEY_LEN);
    publicKeyOf(publicKey, privateKey);
    clients.push({ privateKey, publicKey, tunnel });
  });
  return clients;
}

export type PeerFormat = 'addconf' | 'wg-set';

/**
 * The server side of the clients: `[Peer]` sections for `wg addconf IFNAME FILE`, or `wg set`
 * arguments, one peer a line, for `wg set IFNAME $(...)`. Public keys only.
 */
export function formatPeers(clients: readonly ClientKey[], format: PeerFormat): string {
  if (format === 'wg-set') return clients.map((c) => `peer ${keyBase64(c.publicKey)} allowed-ips ${formatIPv4(c.tunnel)}/32\n`).join('');
  return clients.map((c) => `[Peer]\nPublicKey = ${keyBase64(c.publicKey)}\nAllowedIPs = ${formatIPv4(c.tunnel)}/32\n`).join('\n');
}

export function wipeClients(clients: readonly ClientKey[]): void {
  for (const c of clients) zero(c.privateKey);
}
