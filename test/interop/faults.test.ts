// Faults in a live daemon started in the background, as wg-quick starts it. Its log is kept in
// WG_TS_LOG_DIR/IFNAME.log (/var/log/wireguard-ts by default), a 0600 file in a 0700 directory.
// A control record made to throw (record-fault.ts, preloaded) is logged there, and the tunnel to
// a wireguard-go peer still comes up; a `wg setconf` over the size cap is refused with "Message
// too long", logged, and changes nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cleanup, ensureTools, isRoot, numberedPeers, sh, tryRun, uniqueName, waitFor, wgConfig, wgKeyPair } from './harness.js';
import { BIN, connect, createLink, ping, startHost, type Host } from './topology.js';
import { maxSetBytes } from '../../src/uapi/protocol.js';

const skip = isRoot ? false : 'needs root for TUN devices and namespaces';
const cleanup = new Cleanup();
after(() => cleanup.run());

const MAX_PEERS = 65_536;
const PRELOAD = fileURLToPath(new URL('./record-fault.js', import.meta.url));

/** The JSON lines of a log file. */
function logLines(path: string): { msg: string; err?: { message: string }; limit?: number }[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
}

test('background mode: errors go to the log file; a failing control record and an oversized set leave the daemon serving', { skip, timeout: 120_000 }, async (t) => {
  ensureTools();
  const link = createLink(cleanup);
  const root = mkdtempSync(join(tmpdir(), 'wgts-log-'));
  cleanup.add(() => rmSync(root, { recursive: true, force: true }));
  const logDir = join(root, 'wireguard-ts');
  const ifname = uniqueName('wgts');
  cleanup.add(() => void tryRun('ip', ['-n', link.nsA, 'link', 'del', ifname]));
  // The set cap grows with --max-peers (256 bytes a peer, 32 MiB at least): 65,536 keeps it at 32 MiB.
  const started = spawnSync('ip', ['netns', 'exec', link.nsA, process.execPath, '--import', PRELOAD, BIN, '--max-peers', String(MAX_PEERS), ifname], {
    encoding: 'utf8', timeout: 20_000, env: { ...process.env, WG_TS_LOG_DIR: logDir, WGTS_TEST_RECORD_FAULTS: '1' },
  });
  assert.equal(started.status, 0, started.stderr);
  const logPath = join(logDir, `${ifname}.log`);
  assert.equal(statSync(logDir).mode & 0o777, 0o700, 'the log directory is created 0700');
  assert.equal(statSync(logPath).mode & 0o777, 0o600, 'the log file is created 0600');

  const keys = wgKeyPair();
  const wg = (...args: string[]): string => sh('wg', args);
  const A = { impl: 'ours', ns: link.nsA, ifname, ...keys, port: 51821, outer: link.outerA, tunnel4: '10.200.0.1', tunnel6: 'fd00:200::1', wg } as unknown as Host;
  const B = await startHost(cleanup, 'wggo', link.nsB, link.outerB, 2);
  connect(A, B);
  connect(B, A);
  // B's first initiation is the record that throws; its retry, 5 s later, is answered.
  await waitFor('the tunnel, after the failed record', () => ping(B, A.tunnel4), 30_000);
  const failed = logLines(logPath).filter((l) => l.msg.startsWith('control record failed'));
  assert.equal(failed.length, 1, readFileSync(logPath, 'utf8'));
  assert.equal(failed[0]!.err?.message, 'injected control record fault');

  // Over the cap of this daemon: 230,000 peers with two allowed IPs each are ~36 MB of `set`.
  const big = join(root, 'big.conf');
  writeFileSync(big, wgConfig({ privateKey: keys.privateKey, listenPort: A.port, peers: numberedPeers(230_000) }));
  const refused = tryRun('wg', ['setconf', ifname, big]);
  t.diagnostic(`wg setconf of 230,000 peers: status ${refused.status}, ${refused.out.trim()}`);
  assert.equal(refused.status, 1);
  assert.match(refused.out, /Unable to modify interface: Message too long/);
  const limit = logLines(logPath).find((l) => l.msg.startsWith('UAPI set refused'))?.limit;
  assert.equal(limit, maxSetBytes(MAX_PEERS));
  assert.equal(wg('show', ifname, 'peers').trim(), B.publicKey, 'nothing was applied');
  assert.ok(ping(B, A.tunnel4), 'the tunnel still works');
  assert.doesNotMatch(readFileSync(logPath, 'utf8'), new RegExp(keys.privateKey.replace(/[+/]/g, '\\$&')), 'no private key in the log');
});
