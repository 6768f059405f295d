// What a client is to the server mode, shared by the command line and the HTTP API: creating
// one (fresh keys and preshared key, the lowest free address), its state (the administrator's
// switch, then expiry, then the monthly quota), its configuration text, and the server's
// settings as the store keeps them.
import type { AddressRange, ClientRecord, NewClient, Repository, ServerRecord } from '../store/repository.js';
import { broadcast, formatIPv4, network, parseEndpoint, parseServerAddress, type Subnet4 } from './addresses.js';
import { DEFAULT_ROUTES, formatClientConfig, type ClientEntry, type ServerConfig } from './config.js';
import { newKeyPair, newPresharedKey, publicKeyFromPrivate } from './keys.js';
import { ServerError } from './state.js';
import { detectHostAddress } from './system.js';

export function subnetOf(server: ServerRecord): Subnet4 {
  const s = parseServerAddress(server.address);
  if (typeof s === 'string') throw new ServerError(`the store's server address: ${s}`);
  return s;
}

export function addressRange(s: Subnet4): AddressRange {
  return { first: network(s) + 1, last: broadcast(s) - 1, reserved: s.host };
}

export type ClientState = 'active' | 'disabled' | 'expired' | 'over-quota';

/** Whether the client belongs on the device now, and if not, why (the page shows the reason). */
export function clientState(c: ClientRecord, now: number, usedThisMonth: number): ClientState {
  if (!c.enabled) return 'disabled';
  if (c.expiresAt !== undefined && c.expiresAt <= now) return 'expired';
  if (c.quotaBytes !== undefined && usedThisMonth >= c.quotaBytes) return 'over-quota';
  return 'active';
}

export type ClientInput = Pick<NewClient, 'name' | 'dns' | 'routes' | 'expiresAt' | 'quotaBytes'> & { enabled?: boolean };

/** Creates a client with new keys and the lowest free address of the server's subnet. */
export async function createClient(store: Repository, server: ServerRecord, input: ClientInput): Promise<ClientRecord> {
  const keys = newKeyPair();
  return store.createClient({
    ...input, enabled: input.enabled ?? true, publicKey: keys.publicKey, privateKey: keys.privateKey, presharedKey: newPresharedKey(), extra: [],
  }, addressRange(subnetOf(server)));
}

/** HOST:PORT clients are told, and a note when it was guessed from this host's default route. */
export function resolveEndpoint(server: ServerRecord): { endpoint: string; note?: string } {
  const host = server.endpoint ?? detectHostAddress();
  if (host === undefined) {
    return {
      endpoint: `SERVER_ADDRESS:${server.listenPort}`,
      note: 'warning: this host has no default route, so its address is unknown: the client configuration says ' +
        'SERVER_ADDRESS; replace it, or pass --endpoint HOST (or set WG_TS_ENDPOINT)',
    };
  }
  const e = parseEndpoint(host);
  if (typeof e === 'string') throw new ServerError(`endpoint ${host}: ${e}`);
  return {
    endpoint: `${e.host}:${e.port ?? server.listenPort}`,
    ...(server.endpoint === undefined ? {
      note: `note: the endpoint given to clients is ${e.host}, this host's address on its default route; ` +
        'if clients reach the server through NAT or by a DNS name, pass --endpoint HOST',
    } : {}),
  };
}

/** The client's configuration for wg-quick or a WireGuard app; needs its private key. */
export function clientConfigText(server: ServerRecord, c: ClientRecord, endpoint: string): string {
  if (c.privateKey === undefined) throw new ServerError(`client ${c.name} was imported without its private key: its configuration cannot be shown`);
  if (c.address === undefined) throw new ServerError(`client ${c.name} has no address in ${server.address} (AllowedIPs = ${c.allowedIps.join(', ')})`);
  return formatClientConfig({
    privateKey: c.privateKey,
    address: c.address,
    ...(c.dns !== undefined ? { dns: c.dns } : {}),
    serverPublicKey: publicKeyFromPrivate(server.privateKey),
    ...(c.presharedKey !== undefined ? { presharedKey: c.presharedKey } : {}),
    endpoint,
    routes: c.routes ?? DEFAULT_ROUTES,
  });
}

/** The server and its clients as the wg-quick file's model (config.ts). */
export function toServerConfig(server: ServerRecord, clients: readonly ClientRecord[]): ServerConfig {
  return {
    privateKey: server.privateKey, address: subnetOf(server), listenPort: server.listenPort, mtu: server.mtu,
    ...(server.endpoint !== undefined ? { endpoint: server.endpoint } : {}),
    extra: server.extra,
    clients: clients.map((c): ClientEntry => ({
      name: c.name, publicKey: c.publicKey, ...(c.presharedKey !== undefined ? { presharedKey: c.presharedKey } : {}),
      allowedIps: c.allowedIps, ...(c.dns !== undefined ? { dns: c.dns } : {}), ...(c.routes !== undefined ? { routes: c.routes } : {}), extra: c.extra,
    })),
  };
}

export const describeAddress = (c: ClientRecord): string => (c.address === undefined ? c.allowedIps.join(',') : formatIPv4(c.address));
