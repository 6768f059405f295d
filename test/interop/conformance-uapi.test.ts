// Conformance of the configuration interface, from the netns test of wireguard-go and the kernel
// module (written here from its description): configurations whose `get` answer is far larger
// than one read or one netlink message (one peer with 130,560 allowed IPs; 40 peers with 52 each;
// 30 peers, only the last with allowed IPs), set with `wg setconf` and read back whole with
// `wg show` / `wg showconf`. One daemon, no traffic; wireguard-go's answers too with
// WGTS_CONFORMANCE_REFERENCE=1.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, keyFile, randomPublicKey, sh, tryRun, uniqueName } from './harness.js';
import { startDaemonAlone, type Impl } from './topology.js';
import { reference, skip } from './conformance.js';

const genkey = (): string => sh('wg', ['genkey']).trim();
/** Any 32 bytes make a peer's public key; no one needs to hold its private half here. */
const peerKey = (): string => randomPublicKey();

/** `wg show IF allowed-ips`: per line, a peer's key and its allowed IPs, whitespace-separated. */
function allowedIps(ifname: string): string[][] {
  return sh('wg', ['show', ifname, 'allowed-ips']).trim().split('\n').map((line) => line.split(/\s+/));
}

const sorted = (list: string[]): string[] => [...list].sort();

for (const impl of (reference ? ['ours', 'wggo'] : ['ours']) as Impl[]) {
  describe(`split responses: ${impl}`, { skip }, () => {
    const cleanup = new Cleanup();
    before(() => ensureTools());
    after(() => cleanup.run());

    test('one peer with 255 x 256 /16 and as many /128 allowed IPs: wg show lists all 130,560', { timeout: 120_000 }, async () => {
      const { ifname } = await startDaemonAlone(cleanup, impl);
      const key = peerKey();
      const lines = ['[Interface]', `PrivateKey=${genkey()}`, '[Peer]', `PublicKey=${key}`];
      const expected: string[] = [];
      for (let a = 1; a <= 255; a++) {
        for (let b = 0; b <= 255; b++) {
          lines.push(`AllowedIPs=${a}.${b}.0.0/16,${a}::${b}/128`);
          // As wg prints them: the /128's groups are hex digits, and a trailing zero group folds into "::".
          expected.push(`${a}.${b}.0.0/16`, `${a}::${b === 0 ? '' : b}/128`);
        }
      }
      sh('wg', ['setconf', ifname, keyFile(lines.join('\n') + '\n')]);
      const out = allowedIps(ifname);
      assert.equal(out.length, 1, 'one line');
      const words = out[0]!;
      assert.equal(words.length, 255 * 256 * 2 + 1, 'the key and 130,560 allowed IPs');
      assert.equal(words[0], key);
      assert.deepEqual(sorted(words.slice(1)), sorted(expected));
    });

    test('40 peers with 52 /16 allowed IPs each: wg show lists 40 lines of the key and 52 prefixes', { timeout: 60_000 }, async () => {
      const { ifname } = await startDaemonAlone(cleanup, impl);
      const lines = ['[Interface]', `PrivateKey=${genkey()}`];
      const expected = new Map<string, string[]>();
      for (let a = 1; a <= 40; a++) {
        const key = peerKey();
        lines.push('[Peer]', `PublicKey=${key}`);
        const ips: string[] = [];
        for (let b = 1; b <= 52; b++) {
          lines.push(`AllowedIPs=${a}.${b}.0.0/16`);
          ips.push(`${a}.${b}.0.0/16`);
        }
        expected.set(key, ips);
      }
      sh('wg', ['setconf', ifname, keyFile(lines.join('\n') + '\n')]);
      const out = allowedIps(ifname);
      assert.equal(out.length, 40, 'one line per peer');
      for (const [key, ...ips] of out) {
        assert.equal(ips.length, 52, `peer ${key}`);
        assert.deepEqual(sorted(ips), sorted(expected.get(key!) ?? []), `peer ${key}`);
      }
    });

    test('30 peers, only the last with allowed IPs: wg showconf prints them all', { timeout: 30_000 }, async () => {
      const { ifname } = await startDaemonAlone(cleanup, impl);
      const keys = Array.from({ length: 30 }, peerKey);
      const lines = keys.flatMap((k) => ['[Peer]', `PublicKey=${k}`]);
      lines.push('AllowedIPs=255.2.3.4/32,abcd::255/128');
      sh('wg', ['setconf', ifname, keyFile(lines.join('\n') + '\n')]);
      const conf = sh('wg', ['showconf', ifname]);
      assert.deepEqual(sorted([...conf.matchAll(/^PublicKey = (\S+)$/gm)].map((m) => m[1]!)), sorted(keys));
      assert.match(conf, /^AllowedIPs = 255\.2\.3\.4\/32, abcd::255\/128$/m);
    });
  });
}

test('wg show of an interface that does not exist fails', { skip }, () => {
  assert.notEqual(tryRun('wg', ['show', uniqueName('nx')]).status, 0);
});
