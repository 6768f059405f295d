// The wireguard-go command-line contract: background start returns once the interface and the
// socket exist; deleting the interface or the socket ends the daemon; SIGTERM removes the socket.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, unlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Cleanup, createNetns, isRoot, tryRun, uniqueName, waitFor, SOCKET_DIR } from './harness.js';
import { BIN, startDaemon } from './topology.js';

const skip = isRoot ? false : 'needs root for TUN devices and namespaces';
const cleanup = new Cleanup();
after(() => cleanup.run());

const linkExists = (ns: string, ifname: string): boolean => tryRun('ip', ['-n', ns, 'link', 'show', ifname]).status === 0;
const sock = (ifname: string): string => `${SOCKET_DIR}/${ifname}.sock`;

/** Starts the daemon in the background inside `ns`; returns once the parent has exited. */
function startBackground(ns: string, ifname: string): { status: number | null; stderr: string } {
  cleanup.add(() => void tryRun('ip', ['-n', ns, 'link', 'del', ifname]));
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, BIN, ifname], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

test('background mode returns 0 once the interface and the socket exist; ip link del ends it', { skip, timeout: 30_000 }, async () => {
  const ns = createNetns(cleanup);
  const ifname = uniqueName('wgts');
  const r = startBackground(ns, ifname);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(linkExists(ns, ifname), 'the interface exists when the parent returns');
  assert.ok(existsSync(sock(ifname)), 'the socket exists when the parent returns');
  assert.equal(tryRun('wg', ['show', ifname]).status, 0, 'wg talks to it');
  assert.equal(tryRun('ip', ['-n', ns, 'link', 'del', ifname]).status, 0);
  await waitFor('the daemon to remove its socket after the interface went away', () => !existsSync(sock(ifname)), 5000);
});

test('deleting the socket file ends the daemon and removes the interface', { skip, timeout: 30_000 }, async () => {
  const ns = createNetns(cleanup);
  const ifname = uniqueName('wgts');
  assert.equal(startBackground(ns, ifname).status, 0);
  unlinkSync(sock(ifname));
  await waitFor('the interface to disappear with the daemon', () => !linkExists(ns, ifname), 5000);
});

test('SIGTERM removes the socket and exits 0; a second daemon on the same name is refused', { skip, timeout: 30_000 }, async () => {
  const ns = createNetns(cleanup);
  const ifname = uniqueName('wgts');
  const d = await startDaemon(cleanup, 'ours', ns, ifname);
  const second = startBackground(ns, ifname);
  assert.notEqual(second.status, 0, 'a second daemon for the same interface must fail');
  assert.match(second.stderr, new RegExp(ifname));
  const code = new Promise<number | null>((resolve) => d.proc.once('exit', (c) => resolve(c)));
  d.proc.kill('SIGTERM');
  assert.equal(await code, 0);
  assert.equal(existsSync(sock(ifname)), false, 'socket removed');
  assert.equal(linkExists(ns, ifname), false, 'interface removed');
});

test('bad arguments are refused with a message', () => {
  const bad = spawnSync(process.execPath, [BIN, 'this-name-is-far-too-long'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /invalid interface name/);
  const workers = spawnSync(process.execPath, [BIN, '--workers', 'zero', 'wg0'], { encoding: 'utf8' });
  assert.notEqual(workers.status, 0);
  assert.match(workers.stderr, /--workers/);
});
