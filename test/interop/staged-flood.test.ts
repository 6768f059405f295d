// A VPN client that sends to 10,000 other clients' addresses, none of which has a session
// (issue 12): every such packet waits for a handshake that never completes (their endpoints
// are blackholed inside the daemon's namespace). The packets a daemon keeps for them must stay
// bounded (per peer and per worker), and they must not crowd out a legitimate peer's handshake.
//
// A: ours, with 10,000 peers 10.100.x.y/32 whose endpoints are 10.250.x.y (a blackhole route in
// A's namespace) and IP forwarding on; B: wireguard-go, the flooding client, whose peer A owns
// 10.100.0.0/16; C: a second wireguard-go in B's namespace, the legitimate peer, which
// handshakes with A during the flood.
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, ensureTools, isRoot, keyFile, randomPublicKey, rssKb, sh, tryRun, uniqueName, waitFor, wgKeyPair } from './harness.js';
import { createPair, ping, startDaemon } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const PEERS = 10_000;
const FLOOD_SECONDS = 4;
/** The flood's hard bound on packets, whatever its rate. */
const FLOOD_MAX_PACKETS = 2_000_000;
/** What the daemon's resident set may grow by during the flood (unbounded staging would be GBs). */
const RSS_BOUND_KB = 64 * 1024;
const addr = (net: number, i: number): string => `10.${net}.${(i >> 8) & 255}.${i & 255}`;

describe('a client floods 10,000 peers that have no session', { skip }, () => {
  before(() => ensureTools());

  test('RSS stays bounded and a legitimate peer handshakes in < 1 s', { timeout: 90_000 }, async () => {
    const cleanup = new Cleanup();
    try {
      const { a: A, b: B } = await createPair(cleanup, { a: 'ours', b: 'wggo', oursArgs: ['--workers', '2'] });
      const dir = mkdtempSync(join(tmpdir(), 'wgts-staged-'));
      cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
      const conf = join(dir, 'peers.conf');
      const sections: string[] = [];
      for (let i = 0; i < PEERS; i++) {
        sections.push(`[Peer]\nPublicKey = ${randomPublicKey()}\nAllowedIPs = ${addr(100, i)}/32\nEndpoint = ${addr(250, i)}:51820\n`);
      }
      writeFileSync(conf, sections.join('\n'), { mode: 0o600 });
      sh('wg', ['addconf', A.ifname, conf]);
      sh('ip', ['-n', A.ns, 'route', 'add', 'blackhole', '10.250.0.0/16']);
      sh('ip', ['netns', 'exec', A.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      sh('ip', ['-n', A.ns, 'route', 'add', '10.100.0.0/16', 'dev', A.ifname]);
      B.wg('set', B.ifname, 'peer', A.publicKey, 'allowed-ips', `${A.tunnel4}/32,${A.tunnel6}/128,10.100.0.0/16`);
      sh('ip', ['-n', B.ns, 'route', 'add', '10.100.0.0/16', 'dev', B.ifname]);
      assert.ok(ping(B, A.tunnel4), 'the flooding client\'s tunnel is up');

      // The legitimate peer C, configured now, handshaking only during the flood.
      const cIf = uniqueName('wggo');
      await startDaemon(cleanup, 'wggo', B.ns, cIf);
      const cKeys = wgKeyPair();
      sh('wg', ['set', cIf, 'private-key', keyFile(cKeys.privateKey), 'listen-port', '51823', 'peer', A.publicKey,
        'allowed-ips', '10.201.0.1/32', 'endpoint', `${A.outer}:${A.port}`]);
      sh('ip', ['-n', B.ns, 'addr', 'add', '10.201.0.3/32', 'dev', cIf]);
      sh('ip', ['-n', B.ns, 'link', 'set', cIf, 'up']);
      sh('ip', ['-n', B.ns, 'route', 'add', '10.201.0.1/32', 'dev', cIf]);
      A.wg('set', A.ifname, 'peer', cKeys.publicKey, 'allowed-ips', '10.201.0.3/32');
      sh('ip', ['-n', A.ns, 'addr', 'add', '10.201.0.1/32', 'dev', A.ifname]);
      sh('ip', ['-n', A.ns, 'route', 'add', '10.201.0.3/32', 'dev', A.ifname]);

      const pid = A.proc.pid!;
      const rssBefore = rssKb(pid);
      // The flood: UDP from B's namespace to the 10,000 addresses in turn, for FLOOD_SECONDS.
      const script = `
        const s = require('node:dgram').createSocket('udp4');
        const payload = Buffer.alloc(200, 7);
        const end = Date.now() + ${FLOOD_SECONDS * 1000};
        let sent = 0;
        function burst() {
          for (let k = 0; k < 128; k++, sent++) {
            const i = sent % ${PEERS};
            s.send(payload, 9, '10.100.' + ((i >> 8) & 255) + '.' + (i & 255));
          }
          if (sent === 128 * 80) process.stdout.write('flowing\\n');
          if (Date.now() < end && sent < ${FLOOD_MAX_PACKETS}) setImmediate(burst);
          else s.close(() => { process.stdout.write('sent ' + sent + '\\n'); });
        }
        burst();`;
      const child = spawn('ip', ['netns', 'exec', B.ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
      cleanup.add(() => void child.kill('SIGKILL'));
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      const done = new Promise<void>((r) => child.on('close', () => r()));
      await waitFor('the flood to flow', () => out.includes('flowing'), 5000);
      await new Promise((r) => setTimeout(r, 500)); // well into the flood: staging full, initiations going out

      // ping's round-trip time of its first echo includes the handshake C starts for it (and not
      // the start-up of ping itself, which a loaded machine can make long).
      const t0 = performance.now();
      const r = tryRun('ip', ['netns', 'exec', B.ns, 'ping', '-c', '1', '-W', '3', '-I', '10.201.0.3', '10.201.0.1']);
      const wallMs = performance.now() - t0;
      const handshakeMs = Number(/time=([\d.]+) ms/.exec(r.out)?.[1] ?? Infinity);
      const flooding = !out.includes('sent ');
      await done;
      const rssAfter = rssKb(pid);
      const sent = Number(/sent (\d+)/.exec(out)?.[1] ?? 0);
      console.log(`staged flood: ${sent} packets to ${PEERS} peers without a session; legitimate handshake + ping ${handshakeMs.toFixed(0)} ms (${wallMs.toFixed(0)} ms with ping's start-up); RSS ${rssBefore} -> ${rssAfter} kB (+${rssAfter - rssBefore})`);
      assert.equal(r.status, 0, `the legitimate peer's ping got its reply: ${r.out}`);
      assert.ok(flooding, 'the handshake happened during the flood');
      assert.ok(sent >= PEERS, `the flood reached every address (${sent} packets)`);
      assert.ok(handshakeMs < 1000, `handshake and first ping took ${handshakeMs.toFixed(0)} ms`);
      assert.ok(rssAfter - rssBefore < RSS_BOUND_KB, `RSS grew by ${rssAfter - rssBefore} kB (bound ${RSS_BOUND_KB})`);
      assert.equal(A.exited(), false, 'the daemon is alive');
      assert.ok(ping(B, A.tunnel4), 'the flooding client\'s own tunnel still works');
    } finally {
      await cleanup.run();
    }
  });
});
