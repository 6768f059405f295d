// Many peers through `wg setconf` on wireguard-ts: 10,000 peers with two allowed IPs each are
// taken in bounded time and `wg show dump` lists every one with its prefixes; and the peer
// limit (--max-peers) refuses a request that would pass it, whole, with wireguard-go's errno.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import {
  Cleanup, ensureTools, isRoot, keyFile, numberedPeers, randomPublicKey, sh, tryRun, wgConfig, wgKeyPair,
  type PeerConfig,
} from './harness.js';
import { startDaemonAlone } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';

const ours = (cleanup: Cleanup, extra: string[] = []): ReturnType<typeof startDaemonAlone> => startDaemonAlone(cleanup, 'ours', extra);

/** `wg show IF dump` as public key → allowed IPs (comma-separated, as wg prints them). */
function dumpAllowedIps(ifname: string): Map<string, string> {
  const [, ...lines] = sh('wg', ['show', ifname, 'dump']).trimEnd().split('\n');
  return new Map(lines.map((l) => {
    const f = l.split('\t');
    assert.equal(f.length, 8, 'a peer line has 8 fields');
    return [f[0]!, f[3]!];
  }));
}

test('10,000 peers with an IPv4 /32 and an IPv6 /128 each: wg setconf completes, wg show dump lists them all', { skip, timeout: 120_000 }, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const { ifname } = await ours(cleanup);
    const peers = numberedPeers(10_000);
    const file = keyFile(wgConfig({ privateKey: wgKeyPair().privateKey, listenPort: 51820, peers }));
    const t0 = performance.now();
    sh('wg', ['setconf', ifname, file]);
    const setconfMs = performance.now() - t0;
    assert.ok(setconfMs < 60_000, `setconf took ${setconfMs.toFixed(0)} ms`);
    const listed = dumpAllowedIps(ifname);
    assert.equal(listed.size, peers.length);
    for (const p of peers) assert.equal(listed.get(p.publicKey), p.allowedIps!.join(','), p.publicKey);
  } finally {
    await cleanup.run();
  }
});

test('--max-peers: a request that would pass the limit is refused whole (EINVAL), one within it applies', { skip, timeout: 30_000 }, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const { ifname, exited } = await ours(cleanup, ['--max-peers', '4']);
    const privateKey = wgKeyPair().privateKey;
    const setconf = (peers: PeerConfig[]): { status: number; out: string } =>
      tryRun('wg', ['setconf', ifname, keyFile(wgConfig({ privateKey, listenPort: 51820, peers }))]);
    const four = numberedPeers(4);
    assert.equal(setconf(four).status, 0);
    const full = sh('wg', ['showconf', ifname]);
    const refused = (what: string, r: { status: number; out: string }): void => {
      assert.notEqual(r.status, 0, `${what}: accepted`);
      assert.match(r.out, /Invalid argument/, what);
      assert.equal(sh('wg', ['showconf', ifname]), full, `${what}: nothing applied`);
    };
    refused('a fifth peer', tryRun('wg', ['set', ifname, 'peer', randomPublicKey()]));
    // setconf replaces the peers: the four kept ones and a new one are five.
    refused('the same four and one more', setconf([...four, { publicKey: randomPublicKey() }]));
    refused('a new peer before the removal that makes room', tryRun('wg', ['set', ifname, 'peer', randomPublicKey(), 'peer', four[0]!.publicKey, 'remove']));
    assert.equal(tryRun('wg', ['set', ifname, 'peer', four[0]!.publicKey, 'remove', 'peer', randomPublicKey()]).status, 0, 'removal first makes room');
    const others = numberedPeers(4);
    assert.equal(setconf(others).status, 0, 'four other peers replace the four');
    assert.deepEqual([...dumpAllowedIps(ifname).keys()].sort(), others.map((p) => p.publicKey).sort());
    assert.equal(exited(), false, 'the daemon is still up');
  } finally {
    await cleanup.run();
  }
});
