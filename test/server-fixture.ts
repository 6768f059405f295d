// A server-mode daemon without root for the store, API and web tests: a state directory with a
// server in its store, a fake device behind a real UAPI socket (test/uapi-fake.ts), and the
// daemon's server side (src/server/daemon.ts) with its HTTP server on a free loopback port.
// The store is the state directory's SQLite file, or a PostgreSQL database when a URL is given.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ensureStateDir, statePaths, type StatePaths } from '../src/server/state.js';
import { startServerDaemon, type ServerDaemon } from '../src/server/daemon.js';
import { createClient } from '../src/server/clients.js';
import { newKeyPair } from '../src/server/keys.js';
import { hashSecret } from '../src/server/meta.js';
import { openStoreAt } from '../src/store/open.js';
import type { Repository, ServerRecord } from '../src/store/repository.js';
import { startUapiServer } from '../src/uapi/server.js';
import { FakeDevice } from './uapi-fake.js';

let counter = 0;

export interface Fixture {
  dir: string;
  paths: StatePaths;
  socketDir: string;
  ifname: string;
  device: FakeDevice;
  daemon: ServerDaemon;
  base: string;
  /** A second connection to the store, as another process would have. */
  store: Repository;
  token: string;
  /** fetch against the API with the bearer token (or the headers given). */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text: string; headers: Headers }>;
  close(): Promise<void>;
}

const storeOf = (paths: StatePaths, url: string | undefined): Promise<Repository> => openStoreAt({ file: paths.db, ...(url !== undefined ? { url } : {}) });

export async function createServerStore(paths: StatePaths, clients: number, address = '10.8.0.1/16', url?: string): Promise<ServerRecord> {
  ensureStateDir(paths);
  const store = await storeOf(paths, url);
  const server: ServerRecord = { privateKey: newKeyPair().privateKey, address, listenPort: 51820, mtu: 1420, endpoint: 'vpn.example.com', extra: [], createdAt: Date.now() };
  await store.saveServer(server);
  for (let i = 0; i < clients; i++) await createClient(store, server, { name: `client${i + 1}` });
  await store.close();
  return server;
}

/**
 * `n` clients in one transaction, with random public keys and no private key (a bench needs
 * 100k quickly; clients made through createClient commit one by one).
 */
export async function importClients(paths: StatePaths, n: number, url?: string): Promise<void> {
  const store = await storeOf(paths, url);
  const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.0.0.1/8', listenPort: 51820, mtu: 1420, endpoint: 'vpn.example.com', extra: [], createdAt: Date.now() };
  const base = 0x0a000002;
  await store.importState(server, Array.from({ length: n }, (_, i) => ({
    name: `client${String(i).padStart(6, '0')}`, publicKey: randomBytes(32).toString('base64'), address: base + i, extra: [], enabled: true, createdAt: server.createdAt + i,
  })));
  await store.close();
}

export async function startFixture(opts: { clients?: number; web?: boolean; bulk?: boolean; store?: string } = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-api-'));
  const socketDir = join(dir, 'run');
  const ifname = `wgapi${process.pid % 1000}${counter++}`;
  const paths = statePaths(join(dir, 'state'), ifname);
  if (opts.bulk) {
    ensureStateDir(paths);
    await importClients(paths, opts.clients ?? 0, opts.store);
  } else {
    await createServerStore(paths, opts.clients ?? 3, undefined, opts.store);
  }
  const device = new FakeDevice();
  const uapi = await startUapiServer(ifname, device, { socketDir });
  const daemon = await startServerDaemon({
    ifname, stateDir: paths.dir, socketDir, webBehindTls: false, ...(opts.bulk ? { readPeers: () => ({ [Symbol.iterator]: () => device.peerStates() }) } : {}), log: pino({ level: process.env.FIXTURE_LOG ?? 'silent' }),
    ...(opts.web === false ? {} : { web: { host: '127.0.0.1', port: 0 } }), ...(opts.store !== undefined ? { store: opts.store } : {}),
  });
  const store = await storeOf(paths, opts.store);
  const token = `wgts_test_${counter}`;
  await store.createToken('test', hashSecret(token));
  const base = `http://127.0.0.1:${daemon.webPort}`;
  return {
    dir, paths, socketDir, ifname, device, daemon, base, store, token,
    async api(method, path, body, headers) {
      const res = await fetch(base + path, {
        method,
        headers: { ...(headers ?? { authorization: `Bearer ${token}` }), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    async close() {
      await daemon.close();
      await store.close();
      await uapi.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
