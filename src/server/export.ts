// The store to and from wg-quick files: the export written after every change (IFNAME.conf,
// usable by `wg-quick up` as it is, and a readable backup), and the one-time import of the
// state directory of versions before the store (the same file plus the clients' key files).
import type { Repository } from '../store/repository.js';
import { toServerConfig } from './clients.js';
import { clientAddress, formatServerConfig } from './config.js';
import { writeFileDurably } from './durable.js';
import { ServerError, loadLegacyClientKey, loadLegacyConfig, reason, type StatePaths } from './state.js';
import { formatSubnet } from './addresses.js';

/** Rewrites IFNAME.conf from the store; the old file stays whole when this fails. */
export async function exportConfig(store: Repository, paths: StatePaths): Promise<void> {
  const server = await store.getServer();
  if (server === undefined) return;
  const { items } = await store.listClients({ sort: 'created' });
  try {
    writeFileDurably(paths.config, formatServerConfig(toServerConfig(server, items)));
  } catch (err) {
    throw new ServerError(`cannot write ${paths.config}: ${reason(err)}; the previous file is unchanged`);
  }
}

/**
 * Fills an empty store from a state directory written before the store existed, keeping every
 * client with its keys, name, DNS, routes and hand-written lines, in the file's order. Returns
 * the number of clients imported, or undefined when there was nothing to import.
 */
export async function importLegacyState(store: Repository, paths: StatePaths): Promise<number | undefined> {
  const legacy = loadLegacyConfig(paths);
  if (legacy === undefined) return undefined;
  const now = Date.now();
  await store.importState({
    privateKey: legacy.privateKey, address: formatSubnet(legacy.address), listenPort: legacy.listenPort, mtu: legacy.mtu,
    ...(legacy.endpoint !== undefined ? { endpoint: legacy.endpoint } : {}), extra: legacy.extra, createdAt: now,
  }, legacy.clients.map((c, i) => {
    const privateKey = loadLegacyClientKey(paths, c.name);
    return {
      name: c.name, publicKey: c.publicKey, ...(privateKey !== undefined ? { privateKey } : {}),
      ...(c.presharedKey !== undefined ? { presharedKey: c.presharedKey } : {}),
      address: clientAddress(legacy, c) ?? null, allowedIps: c.allowedIps,
      ...(c.dns !== undefined ? { dns: c.dns } : {}), ...(c.routes !== undefined ? { routes: c.routes } : {}),
      // Created one millisecond apart: the export keeps the file's order.
      extra: c.extra, enabled: true, createdAt: now + i,
    };
  }));
  return legacy.clients.length;
}
