// wireguard-ts as a drop-in for wireguard-go under the real `wg` and `wg-quick`: a showconf /
// setconf round trip through both implementations, `wg show` reading our state, `wg syncconf`
// changing other peers under a ping flood without touching the live session, wg-quick bringing
// an interface up and down with us as its userspace implementation, and a busy listen port
// refused as wireguard-go refuses it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Cleanup, SOCKET_DIR, createNetns, ensureTools, isRoot, keyFile, randomPublicKey, sh, tryRun, uniqueName, waitFor,
  peerSection, wgConfig, wgKeyPair, type PeerConfig,
} from './harness.js';
import { BIN, connect, createLink, createPair, peerDump, ping, startDaemon, startDaemonAlone, startHost, type Host } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces';

/** Keys in text replaced by a short digest, so a failing comparison shows where keys differ without printing them. */
function redact(text: string): string {
  const digest = (s: string): string => `<sha256 ${createHash('sha256').update(s).digest('hex').slice(0, 12)}>`;
  return text.replace(/^(PrivateKey|PresharedKey) = (\S+)$/gm, (_, k: string, v: string) => `${k} = ${digest(v)}`);
}

/** The peer sections of a config in key order (wireguard-go lists peers in Go map order). */
function sortPeers(conf: string): string {
  const [head, ...peers] = conf.split('\n[Peer]\n');
  return [head, ...peers.map((p) => p.replace(/\n*$/, '\n')).sort()].join('\n[Peer]\n');
}


/** The literal pipeline a user types; pipefail so an empty config from a failed showconf is not applied. */
function pipeConf(from: string, to: string): void {
  sh('bash', ['-c', 'set -o pipefail; wg showconf "$1" | wg setconf "$2" /dev/stdin', 'bash', from, to]);
}

test('wg showconf | wg setconf /dev/stdin round-trips through wireguard-ts and wireguard-go; wg show reads us', { skip, timeout: 60_000 }, async (t) => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const self = wgKeyPair();
    const psk = sh('wg', ['genpsk']).trim();
    // Allowed IPs deliberately out of address order and mixed in family: `get` lists them in
    // insertion order, which the round trip must keep. Endpoints have no route in the empty
    // namespaces, so nothing is sent anywhere.
    const peers: PeerConfig[] = [
      { publicKey: randomPublicKey(), presharedKey: psk, allowedIps: ['10.9.9.9/32', '10.1.0.0/16', 'fd00:1::/64'], endpoint: '10.99.7.1:51820', persistentKeepalive: 25 },
      { publicKey: randomPublicKey(), allowedIps: ['fd00:2::/64', '10.2.0.0/24', '2001:db8::7/128', '10.2.1.0/24'], endpoint: '[fd00:99::7]:443' },
      { publicKey: randomPublicKey(), allowedIps: ['0.0.0.0/0', '::/0'], persistentKeepalive: 1 },
      { publicKey: randomPublicKey() },
    ];
    const conf = wgConfig({ privateKey: self.privateKey, listenPort: 51820, fwmark: 0x42, peers });
    const [original, oursCopy, goCopy] = (await Promise.all([startDaemonAlone(cleanup, 'ours'), startDaemonAlone(cleanup, 'ours'), startDaemonAlone(cleanup, 'wggo')])).map((d) => d.ifname);
    sh('wg', ['setconf', original, keyFile(conf)]);
    assert.equal(redact(sh('wg', ['showconf', original])), redact(conf), 'showconf prints what setconf was given, in order');

    await t.test('onto a fresh wireguard-ts and a fresh wireguard-go: the same config', () => {
      pipeConf(original, oursCopy);
      pipeConf(original, goCopy);
      assert.equal(redact(sh('wg', ['showconf', oursCopy])), redact(conf), 'wireguard-ts copy');
      assert.equal(redact(sortPeers(sh('wg', ['showconf', goCopy]))), redact(sortPeers(conf)), 'wireguard-go copy');
    });

    await t.test('the same wg set on both copies leaves them equal', () => {
      const added = randomPublicKey();
      for (const ifname of [oursCopy, goCopy]) {
        sh('wg', ['set', ifname, 'listen-port', '51999', 'fwmark', '0',
          'peer', peers[0]!.publicKey, 'preshared-key', '/dev/null', 'persistent-keepalive', 'off', 'allowed-ips', '10.1.0.0/16,10.3.0.0/16',
          'peer', peers[1]!.publicKey, 'remove',
          'peer', peers[2]!.publicKey, 'endpoint', '[fd00:99::8]:1', 'allowed-ips', '',
          'peer', added, 'allowed-ips', '10.9.9.9/32']);
      }
      const ours = sh('wg', ['showconf', oursCopy]);
      assert.match(ours, /ListenPort = 51999\n(?!FwMark)/);
      assert.equal(redact(sortPeers(ours)), redact(sortPeers(sh('wg', ['showconf', goCopy]))));
    });

    const pub = self.publicKey;
    await t.test('wg show all dump: our interface line and one line per peer', () => {
      // Other daemons on the machine are listed too (and a dead one's stale socket makes wg fail): ours only.
      const lines = tryRun('wg', ['show', 'all', 'dump']).out.split('\n').filter((l) => l.startsWith(original + '\t')).map((l) => l.split('\t'));
      assert.equal(lines.length, 1 + peers.length);
      const [iface, ...rest] = lines;
      assert.equal(iface!.length, 5);
      assert.ok(iface![1] === self.privateKey, 'private key field');
      assert.deepEqual(iface!.slice(2), [pub, '51820', '0x42']);
      const expected = peers.map((p) => [original, p.publicKey, p.presharedKey ? 'psk' : '(none)', p.endpoint ?? '(none)',
        p.allowedIps?.join(',') ?? '(none)', '0', String(p.persistentKeepalive ?? 'off')]);
      const got = rest.map((f) => {
        assert.equal(f.length, 9, `fields of ${f[1]}`);
        assert.ok(f[2] === '(none)' || f[2] === psk, 'preshared key field');
        for (const n of f.slice(6, 8)) assert.match(n, /^\d+$/, 'transfer counters');
        return [f[0]!, f[1]!, f[2] === psk ? 'psk' : f[2]!, f[3]!, f[4]!, f[5]!, f[8]!];
      });
      assert.deepEqual(got, expected);
    });

    await t.test('wg show IF: every field in wg\'s words', () => {
      const [head, ...blocks] = sh('wg', ['show', original]).trimEnd().split('\n\n');
      assert.equal(head, [`interface: ${original}`, `  public key: ${pub}`, '  private key: (hidden)', '  listening port: 51820', '  fwmark: 0x42'].join('\n'));
      const expected = peers.map((p) => [
        `peer: ${p.publicKey}`,
        ...(p.presharedKey ? ['  preshared key: (hidden)'] : []),
        ...(p.endpoint ? [`  endpoint: ${p.endpoint}`] : []),
        `  allowed ips: ${p.allowedIps?.join(', ') ?? '(none)'}`,
        ...(p.persistentKeepalive ? [`  persistent keepalive: every ${p.persistentKeepalive} second${p.persistentKeepalive === 1 ? '' : 's'}`] : []),
      ].join('\n'));
      assert.deepEqual(blocks.sort(), expected.sort());
    });
  } finally {
    await cleanup.run();
  }
});

/** A ping flood running in `from`'s namespace: the highest sequence answered so far, and its summary once done. */
interface Flood { answered: () => number; exited: () => boolean; done: Promise<{ sent: number; received: number; tail: string }> }

function flood(cleanup: Cleanup, from: Host, to: string, count: number, interval: string): Flood {
  const p = spawn('ip', ['netns', 'exec', from.ns, 'ping', '-n', '-i', interval, '-c', String(count), '-W', '2', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let answered = 0;
  let exited = false;
  cleanup.add(() => void (exited || p.kill()));
  p.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const m of chunk.matchAll(/icmp_seq=(\d+)/g)) answered = Math.max(answered, Number(m[1]));
  });
  const done = new Promise<{ sent: number; received: number; tail: string }>((resolve) => {
    p.on('exit', () => {
      exited = true;
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      resolve({ sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), tail: out.slice(-300) });
    });
  });
  return { answered: () => answered, exited: () => exited, done };
}

test('wg syncconf adds and removes other peers under a ping flood: no loss, no new handshake', { skip, timeout: 60_000 }, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const { a, b } = await createPair(cleanup, { a: 'ours', b: 'wggo', psk: true });
    assert.ok(ping(a, b.tunnel4), 'tunnel up');
    const handshakes = (): number[] => [peerDump(a, b.publicKey).latestHandshake, peerDump(b, a.publicKey).latestHandshake];
    const before = handshakes();
    assert.ok(before.every((s) => s > 0), 'both sides completed a handshake');
    const shown = sh('wg', ['show', a.ifname]);
    assert.match(shown, new RegExp(`peer: ${b.publicKey.replace(/[+/]/g, '\\$&')}\n(  .*\n)*  latest handshake: .*\n  transfer: .* received, .* sent`), 'wg show has the handshake and transfer lines');

    // The file keeps b's section as it is (syncconf rewrites it all the same) and swaps the others.
    const base = sh('wg', ['showconf', a.ifname]);
    const others = Array.from({ length: 8 }, (_, i): PeerConfig => ({
      publicKey: randomPublicKey(), allowedIps: [`10.50.${i}.0/24`, `fd00:50:${i}::/64`], endpoint: `10.99.0.${100 + i}:51820`,
    }));
    const rounds = 6;
    const count = 1500;
    const f = flood(cleanup, a, b.tunnel4, count, '0.002');
    for (let r = 0; r < rounds; r++) {
      // Spread the rounds over the flood: round r once it is past packet r/rounds of the way.
      await waitFor(`flood past packet ${(r * count) / rounds}`, () => f.answered() >= (r * count) / rounds, 10_000);
      const keep = others.slice(r, r + 3);
      const conf = [base, ...keep.map(peerSection)].join('\n');
      sh('wg', ['syncconf', a.ifname, keyFile(conf)]);
      const listed = a.wg('show', a.ifname, 'peers').trim().split('\n').sort();
      assert.deepEqual(listed, [b.publicKey, ...keep.map((p) => p.publicKey)].sort(), `peers after round ${r}`);
    }
    const flowing = !f.exited();
    const { sent, received, tail } = await f.done;
    assert.ok(flowing, 'every syncconf ran while the flood was still running');
    assert.equal(sent, count, tail);
    assert.equal(received, sent, `lost ${sent - received} of ${sent} pings`);
    assert.deepEqual(handshakes(), before, 'no new handshake on either side');
    assert.equal(redact(sh('wg', ['showconf', a.ifname]).split('\n[Peer]\n')[1]!), redact(base.split('\n[Peer]\n')[1]!), 'b\'s section unchanged');
  } finally {
    await cleanup.run();
  }
});

/** The pid of our daemon serving `ifname` (the detached child that wg-quick left running). */
function daemonPid(ifname: string): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.includes(ifname) && argv.some((a) => a.endsWith('/main.js'))) return Number(d);
    } catch {
      // Gone while we looked.
    }
  }
  return undefined;
}

const hasKernelModule = existsSync('/sys/module/wireguard');

test('wg-quick up / down with WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-ts, traffic to wireguard-go in between', {
  skip: skip || (hasKernelModule && 'wg-quick prefers the kernel module, which is loaded here'), timeout: 60_000,
}, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const link = createLink(cleanup);
    const go = await startHost(cleanup, 'wggo', link.nsB, link.outerB, 2);
    const keys = wgKeyPair();
    const us = { ...keys, ns: link.nsA, outer: link.outerA, port: 51821, tunnel4: '10.200.0.1', tunnel6: 'fd00:200::1' };
    const psk = sh('wg', ['genpsk']).trim();
    connect(go, us, keyFile(psk));

    const ifname = uniqueName('wgq');
    const dir = mkdtempSync(join(tmpdir(), 'wgts-quick-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, `${ifname}.conf`);
    writeFileSync(path, [
      '[Interface]', `Address = ${us.tunnel4}/24, ${us.tunnel6}/64`, `ListenPort = ${us.port}`, `PrivateKey = ${keys.privateKey}`, 'MTU = 1380', '',
      '[Peer]', `PublicKey = ${go.publicKey}`, `PresharedKey = ${psk}`, `AllowedIPs = ${go.tunnel4}/32, ${go.tunnel6}/128`,
      `Endpoint = ${go.outer}:${go.port}`, 'PersistentKeepalive = 25', '',
    ].join('\n'), { mode: 0o600 });
    const wgQuick = (verb: 'up' | 'down'): void =>
      void sh('ip', ['netns', 'exec', link.nsA, 'wg-quick', verb, path], { env: { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: BIN } });

    cleanup.add(() => void tryRun('ip', ['netns', 'exec', link.nsA, 'wg-quick', 'down', path]));
    wgQuick('up');
    const pid = daemonPid(ifname);
    assert.ok(pid !== undefined, 'wg-quick started wireguard-ts');
    cleanup.add(() => void tryRun('kill', [String(pid)]));
    assert.ok(existsSync(`${SOCKET_DIR}/${ifname}.sock`), 'our UAPI socket is there');
    const dev = JSON.parse(sh('ip', ['-n', link.nsA, '-j', 'addr', 'show', 'dev', ifname])) as { mtu: number; addr_info: { local: string; prefixlen: number }[] }[];
    assert.equal(dev[0]!.mtu, 1380);
    assert.deepEqual(dev[0]!.addr_info.map((x) => `${x.local}/${x.prefixlen}`).filter((x) => !x.startsWith('fe80')).sort(), [`${us.tunnel4}/24`, `${us.tunnel6}/64`]);
    // The persistent keepalive starts a session with no traffic at all (and the PSK must match for it).
    await waitFor('a handshake from the persistent keepalive', () => peerDump(go, keys.publicKey).latestHandshake > 0, 10_000);
    assert.ok(ping(us, go.tunnel4), 'IPv4 ping through the tunnel');
    assert.ok(ping(us, go.tunnel6), 'IPv6 ping through the tunnel');
    assert.ok(ping(us, go.tunnel4, ['-M', 'do', '-s', '1352']), 'a ping that fills the 1380-byte MTU');

    wgQuick('down');
    await waitFor('our daemon to exit', () => !existsSync(`/proc/${pid}`), 10_000);
    assert.equal(existsSync(`${SOCKET_DIR}/${ifname}.sock`), false, 'socket removed');
    assert.notEqual(tryRun('ip', ['-n', link.nsA, 'link', 'show', ifname]).status, 0, 'interface removed');
  } finally {
    await cleanup.run();
  }
});

test('a listen port already bound is refused with EADDRINUSE as in wireguard-go, and nothing of the request applies; a port given up is free when its reply comes', { skip, timeout: 30_000 }, async () => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    // Three daemons in one namespace share its ports: two of ours (whose sockets use
    // SO_REUSEPORT among their own workers, which must not let another daemon join) and wireguard-go.
    const ns = createNetns(cleanup);
    const ours1 = uniqueName('wgts');
    const ours2 = uniqueName('wgts');
    const go = uniqueName('wggo');
    for (const [impl, ifname] of [['ours', ours1], ['ours', ours2], ['wggo', go]] as const) await startDaemon(cleanup, impl, ns, ifname);
    const port = (ifname: string): string => sh('wg', ['show', ifname, 'listen-port']).trim();
    const setPort = (ifname: string, p: number): { status: number; out: string } =>
      tryRun('wg', ['set', ifname, 'listen-port', String(p), 'peer', randomPublicKey(), 'allowed-ips', '10.1.0.0/16']);
    sh('wg', ['set', ours1, 'listen-port', '51830']);
    sh('wg', ['set', go, 'listen-port', '51831']);
    for (const p of [51830, 51831]) {
      const before = sh('wg', ['showconf', ours2]);
      const r = setPort(ours2, p);
      assert.notEqual(r.status, 0, `took port ${p}`);
      assert.match(r.out, /Address already in use/);
      // wireguard-go would keep the new port number without a socket; we keep everything.
      assert.equal(sh('wg', ['showconf', ours2]), before, 'nothing of the request applied');
    }
    const theirs = setPort(go, 51830);
    assert.notEqual(theirs.status, 0, 'wireguard-go cannot join our port either');
    assert.match(theirs.out, /Address already in use/);
    // Our own port again is no change; a port given up can be taken by another daemon.
    sh('wg', ['set', ours1, 'listen-port', '51830']);
    sh('wg', ['set', ours1, 'listen-port', '51832']);
    // At once: the reply to a port change comes only after the old port is released.
    assert.equal(setPort(ours2, 51830).status, 0);
    assert.equal(port(ours2), '51830');
  } finally {
    await cleanup.run();
  }
});
