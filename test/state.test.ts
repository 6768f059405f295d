// Server-mode state under faults (issue 12 item 10): kill -9 during 100 rounds of add-client
// never leaves a truncated or lost configuration; 50 add-client run two at a time never hand
// out one address twice; a full filesystem (a tiny tmpfs, as root) leaves the old
// configuration intact with a clear error. Plus the import of a pre-store state directory, the
// flock lock between processes, and the warning about readable state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatServerConfig, parseServerConfig, type ServerConfig } from '../src/server/config.js';
import { exportConfig, importLegacyState } from '../src/server/export.js';
import { newKeyPair, newPresharedKey } from '../src/server/keys.js';
import { withLock } from '../src/server/lock.js';
import { exposureWarnings, statePaths } from '../src/server/state.js';
import { parseServerAddress, type Subnet4 } from '../src/server/addresses.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { createServerStore } from './server-fixture.js';

const BIN = fileURLToPath(new URL('../../bin/wireguard-ts', import.meta.url));
const isRoot = process.getuid?.() === 0;

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-state-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A unique interface name that no daemon holds, so commands run against the store alone. */
const ifname = (): string => `wgst${process.pid % 10000}`;

function cli(dir: string, ...args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--state-dir', dir, '--interface', ifname(), '--no-qr'], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

async function storeNames(db: string): Promise<{ name: string; address: number }[]> {
  const store = await openSqliteStore(db);
  try {
    return (await store.listClients({ sort: 'created' })).items.map((c) => ({ name: c.name, address: c.address! }));
  } finally {
    await store.close();
  }
}

test('state: import of a pre-store directory keeps every client and key; the export is the same file', async (t) => {
  const dir = tmp(t);
  const p = statePaths(dir, 'wg0');
  const k = (): string => newKeyPair().publicKey;
  const legacy: ServerConfig = {
    privateKey: newKeyPair().privateKey, address: parseServerAddress('10.8.0.1/24') as Subnet4, listenPort: 51820, mtu: 1420, endpoint: 'vpn.example.com:4500',
    extra: ['PostUp = iptables -A FORWARD -i %i -j ACCEPT', '# a hand-written note'],
    clients: [
      { name: 'alice', publicKey: k(), presharedKey: newPresharedKey(), allowedIps: ['10.8.0.2/32'], extra: [] },
      { name: 'bob.phone', publicKey: k(), presharedKey: newPresharedKey(), allowedIps: ['10.8.0.3/32', 'fd00::3/128'], dns: ['1.1.1.1'], routes: ['10.0.0.0/8'], extra: ['# keep me'] },
      { name: 'far', publicKey: k(), allowedIps: ['192.168.9.0/24'], extra: [] },
    ],
  };
  const text = formatServerConfig(legacy);
  writeFileSync(p.config, text, { mode: 0o600 });
  mkdirSync(p.clients, { mode: 0o700 });
  writeFileSync(join(p.clients, 'alice.key'), newKeyPair().privateKey + '\n', { mode: 0o600 });
  const store = await openSqliteStore(p.db);
  t.after(() => store.close());
  assert.equal(await importLegacyState(store, p), 3);
  const alice = await store.getClientByName('alice');
  assert.equal(alice?.privateKey, readFileSync(join(p.clients, 'alice.key'), 'utf8').trim());
  assert.equal((await store.getClientByName('far'))?.address, undefined);
  await exportConfig(store, p);
  assert.equal(readFileSync(p.config, 'utf8'), text, 'export after import: byte-identical');
  assert.deepEqual(parseServerConfig(readFileSync(p.config, 'utf8'), 'x'), legacy);
  assert.equal(existsSync(join(p.clients, 'alice.key')), true, 'the old key files stay');
});

test('state: the flock lock waits for a live holder, is free at once after its kill -9, and files are private', async (t) => {
  const dir = tmp(t);
  const lock = join(dir, 'wg0.lock');
  const holder = spawn(process.execPath, ['--input-type=module', '-e',
    `const { withLock } = await import(${JSON.stringify(new URL('../src/server/lock.js', import.meta.url).href)});
     await withLock(${JSON.stringify(lock)}, async () => { process.stdout.write('held\\n'); await new Promise(() => setTimeout(() => {}, 60000)); });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  await assert.rejects(withLock(lock, async () => 'no', 300), /another wireguard-ts command has been changing this server/);
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  assert.equal(await withLock(lock, async () => 'ran', 300), 'ran', 'a dead holder leaves no stale lock');

  const p = statePaths(join(dir, 'state'), 'wg0');
  await createServerStore(p, 1);
  assert.deepEqual(exposureWarnings(p), []);
  chmodSync(p.dir, 0o755);
  chmodSync(p.db, 0o644);
  const warnings = exposureWarnings(p);
  assert.equal(warnings.length, 2);
  assert.match(warnings[1]!, /wg0\.db is world accessible \(mode 644\) and holds private keys; chmod 600/);
  const r = spawnSync(process.execPath, [BIN, 'list-clients', '--state-dir', p.dir, '--interface', 'wg0'], { encoding: 'utf8' });
  assert.match(r.stderr, /warning: .* is world accessible/);
});

test('state: kill -9 during 100 rounds of add-client never leaves a truncated or lost configuration', { timeout: 300_000 }, async (t) => {
  const dir = join(tmp(t), 'state');
  const p = statePaths(dir, ifname());
  await createServerStore(p, 0);
  const reported: string[] = [];
  for (let i = 0; i < 100; i++) {
    const name = `c${i}`;
    const child = spawn(process.execPath, [BIN, 'add-client', name, '--state-dir', dir, '--interface', ifname(), '--no-qr'], { stdio: 'ignore' });
    // Spread the kills over the command's life: start-up, store transaction, export, exit.
    const timer = setTimeout(() => child.kill('SIGKILL'), 150 + ((i * 97) % 1100));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(timer);
    if (code === 0) reported.push(name);
    if (existsSync(p.config)) {
      const conf = readFileSync(p.config, 'utf8');
      assert.doesNotThrow(() => parseServerConfig(conf, p.config), `round ${i}: the export is whole`);
    }
  }
  const names = (await storeNames(p.db)).map((c) => c.name);
  for (const n of reported) assert.ok(names.includes(n), `${n} was reported added and is kept`);
  assert.ok(reported.length > 0 && reported.length < 100, `some rounds were killed, some finished (${reported.length} finished)`);
  const check = spawnSync('sh', ['-c', `command -v sqlite3 >/dev/null && sqlite3 ${p.db} 'pragma integrity_check' || echo ok`], { encoding: 'utf8' });
  assert.equal(check.stdout.trim(), 'ok');
  // One more command brings the export level with the store.
  assert.equal(cli(dir, 'add-client', 'last').status, 0);
  const exported = parseServerConfig(readFileSync(p.config, 'utf8'), p.config).clients.map((c) => c.name);
  assert.deepEqual(exported, [...names, 'last']);
});

test('state: 50 add-client run two at a time never hand out one address twice', { timeout: 300_000 }, async (t) => {
  const dir = join(tmp(t), 'state');
  const p = statePaths(dir, ifname());
  await createServerStore(p, 0);
  const run = (name: string): Promise<number | null> => new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'add-client', name, '--state-dir', dir, '--interface', ifname(), '--no-qr'], { stdio: 'ignore' });
    child.once('exit', (c) => resolve(c));
  });
  for (let i = 0; i < 50; i += 2) assert.deepEqual(await Promise.all([run(`a${i}`), run(`a${i + 1}`)]), [0, 0]);
  const clients = await storeNames(p.db);
  assert.equal(clients.length, 50);
  assert.equal(new Set(clients.map((c) => c.address)).size, 50, 'every address once');
  const exported = parseServerConfig(readFileSync(p.config, 'utf8'), p.config).clients;
  assert.equal(new Set(exported.map((c) => c.allowedIps[0])).size, 50);
});

test('state: a full filesystem leaves the old configuration intact with a clear error', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'wgts-full-'));
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mnt]).status, 0);
  t.after(() => {
    spawnSync('umount', ['-l', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const dir = join(mnt, 'state');
  const p = statePaths(dir, ifname());
  await createServerStore(p, 3);
  assert.equal(cli(dir, 'add-client', 'before').status, 0);
  const conf = readFileSync(p.config, 'utf8');
  const clients = await storeNames(p.db);
  // Fill the filesystem to the last block.
  spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
  const r = cli(dir, 'add-client', 'after');
  assert.equal(r.status, 1, r.err);
  assert.match(r.err, /^wireguard-ts: cannot (write|change the store|open the store) .*no space left on the device.*(unchanged|nothing was changed)\n$/);
  assert.equal(readFileSync(p.config, 'utf8'), conf, 'the export is the old one, whole');
  rmSync(join(mnt, 'filler'));
  assert.deepEqual(await storeNames(p.db), clients, 'the store is the old one');
  assert.equal(cli(dir, 'add-client', 'after').status, 0, 'with room again, the command works');
});
