// The same raw UAPI requests to Debian's wireguard-go and to our server (with a fake device)
// must get the same answer, and `get` output must match wireguard-go's byte for byte.
//
// Errno table found against wireguard-go 0.0.20220316 (the wire carries it negated):
//   0     success; also update_only / remove for an unknown peer
//   -5    EIO: a line of more than 65535 bytes (then the connection is closed)
//   -22   EINVAL: bad hex or wrong key length, a number out of range or not decimal, a bad
//         endpoint (host name, unknown zone, IPv4 in brackets, IPv6 without), a bad CIDR
//         (prefix > 32 / > 128, zone, no length), an unknown key, a peer key before any
//         public_key or a device key after one, a flag other than "true", protocol_version
//         other than 1, "get=1" not followed by an empty line
//   -71   EPROTO: a line without '='
//   -98   EADDRINUSE: listen_port cannot be bound
//   none  an unknown operation line: the connection is closed without a reply
// Not compared here, because Debian's build differs from current wireguard-go: "/+8" and
// "/08" prefix lengths (accepted by Go < 1.22, refused by us), and `allowed_ip=-CIDR`
// (refused by wireguard-go < 0.0.20250522, accepted by us); and whole-request atomicity,
// which is our deliberate difference (wireguard-go keeps the lines before a bad one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, SOCKET_DIR, ensureTools, isRoot, sh, startWireguardGo, uniqueName, wgKeyPair } from './harness.js';
import { parseGetResponse, writeGetResponse } from '../../src/uapi/protocol.js';
import { startUapiServer } from '../../src/uapi/server.js';
import type { PeerState } from '../../src/uapi/types.js';
import { FakeDevice } from '../uapi-fake.js';

const skip = isRoot ? false : 'needs root to run wireguard-go';
const K = (n: number): string => n.toString(16).padStart(64, '0');

/** Sends one raw request on a fresh connection; the reply up to its errno line, or how it ended. */
function exchange(path: string, request: string): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    let out = '';
    let settled = false;
    const done = (suffix: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.destroy();
      resolve(out + suffix);
    };
    const timer = setTimeout(() => done('<no reply>'), 3000);
    c.on('data', (d) => {
      out += d.toString();
      if (/(^|\n)errno=-?\d+\n\n$/.test(out)) done('');
    });
    c.on('close', () => done('<closed>'));
    c.on('error', () => undefined);
    c.write(request);
  });
}

const P = `public_key=${K(0x51)}\n`;
/** [what, request]: each goes to both implementations on its own connection. */
const CASES: [string, string][] = [
  ['bad hex private key', `set=1\nprivate_key=${'zz'.repeat(32)}\n\n`],
  ['private key too long', `set=1\nprivate_key=${K(1)}00\n\n`],
  ['private key too short', `set=1\nprivate_key=${K(1).slice(2)}\n\n`],
  ['bad hex public key', `set=1\npublic_key=${K(1).slice(1)}g\n\n`],
  ['public key of wrong length', `set=1\npublic_key=${K(1)}0\n\n`],
  ['bad preshared key', `set=1\n${P}preshared_key=${K(1).slice(4)}\n\n`],
  ['listen port out of range', 'set=1\nlisten_port=65536\n\n'],
  ['listen port negative', 'set=1\nlisten_port=-1\n\n'],
  ['listen port in hex', 'set=1\nlisten_port=0x50\n\n'],
  ['fwmark out of range', 'set=1\nfwmark=4294967296\n\n'],
  ['fwmark not decimal', 'set=1\nfwmark=0x10\n\n'],
  ['fwmark empty', 'set=1\nfwmark=\n\n'],
  ['replace_peers=false', 'set=1\nreplace_peers=false\n\n'],
  ['unknown device key', 'set=1\nbogus=1\n\n'],
  ['unknown peer key', `set=1\n${P}bogus=1\n\n`],
  ['peer key before public_key', 'set=1\nendpoint=1.2.3.4:51820\n\n'],
  ['allowed_ip before public_key', 'set=1\nallowed_ip=10.0.0.0/8\n\n'],
  ['device key after public_key', `set=1\n${P}listen_port=1\n\n`],
  ['line without =', 'set=1\nlisten_port\n\n'],
  ['peer line without =', `set=1\n${P}remove\n\n`],
  ['update_only=false', `set=1\n${P}update_only=false\n\n`],
  ['remove=1', `set=1\n${P}remove=1\n\n`],
  ['replace_allowed_ips=yes', `set=1\n${P}replace_allowed_ips=yes\n\n`],
  ['protocol_version=2', `set=1\n${P}protocol_version=2\n\n`],
  ['keepalive out of range', `set=1\n${P}persistent_keepalive_interval=65536\n\n`],
  ['update_only for an unknown peer', `set=1\npublic_key=${K(0x77)}\nupdate_only=true\nendpoint=1.2.3.4:1\n\n`],
  ['remove of an unknown peer', `set=1\npublic_key=${K(0x78)}\nremove=true\n\n`],
  ['get=1 with trailing garbage', 'get=1\nx'],
  ['unknown operation', 'bogus=1\n\n'],
  ['set=1 with CRLF', 'set=1\r\n\n'],
  ['line over 65535 bytes', `set=1\nfwmark=${'1'.repeat(70000)}\n\n`],
  ['line of 65535 bytes', `set=1\nfwmark=${'0'.repeat(65528)}\n\n`],
  ['CRLF lines', `set=1\n${P.trim()}\r\npersistent_keepalive_interval=0\r\n\r\n`],
  ...['1.2.3.4', '1.2.3.4:', '1.2.3.4:65536', '1.2.3.4:+5', '01.2.3.4:5', '1.2.3.256:5', '[1.2.3.4]:5', '::1:5', '[::1]',
    'localhost:51820', 'example.com:51820', '[fe80::1%]:5', '[fe80::1%nosuch0]:5', '1.2.3.4%lo:5', '[1::2::3]:5',
    '[12345::]:5', '', ' 1.2.3.4:5', // malformed
    '1.2.3.4:0', '1.2.3.4:05', '[::ffff:1.2.3.4]:5', '[fe80::1%lo]:5', '[fe80::1%1]:5', '[1:2:3:4:5:6:7::]:5'] // fine
    .map((v): [string, string] => [`endpoint ${JSON.stringify(v)}`, `set=1\n${P}endpoint=${v}\n\n`]),
  ...['10.0.0.0/33', '::/129', 'fd00::/200', '10.0.0.0', '10.0.0.0/', '1.2.3.4/-1', 'fe80::1%lo/64', ' 10.0.0.0/8',
    '1:2:3:4:5:6:7:8:9/128', '1.2.3/24', '1.2.3.4/32/32', '', // malformed
    '10.1.2.3/8', '10.0.0.0/32', '::ffff:1.2.3.4/120', '01234::/64', '::1.2.3.4/128', 'FD00::/8'] // fine
    .map((v): [string, string] => [`allowed_ip ${JSON.stringify(v)}`, `set=1\n${P}allowed_ip=${v}\n\n`]),
];

/** A UDP port free on IPv4 and IPv6 right now. */
async function freePort(): Promise<number> {
  const v6 = createSocket({ type: 'udp6', ipv6Only: true });
  await new Promise<void>((r) => v6.bind(0, r));
  const port = v6.address().port;
  const v4 = createSocket('udp4');
  const ok = await new Promise<boolean>((r) => {
    v4.once('error', () => r(false));
    v4.bind(port, () => r(true));
  });
  v4.close();
  v6.close();
  return ok ? port : freePort();
}

/** The state of a `get` reply without what changes on its own, in a canonical order. */
function comparable(text: string): unknown {
  const r = parseGetResponse(text);
  assert.ok(r, `unparsable get reply:\n${text}`);
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  const peers = r.peers.map((p: PeerState) => ({
    ...p, lastHandshakeSec: 0, lastHandshakeNsec: 0, txBytes: 0n, rxBytes: 0n,
    allowedIps: p.allowedIps.map((a) => `${hex(a.addr)}/${a.cidr}`).sort(),
  }));
  return { ...r, peers: peers.sort((a, b) => hex(a.publicKey).localeCompare(hex(b.publicKey))) };
}

/** Runs `wg` without blocking the event loop, which serves our socket in this process. */
function wg(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('wg', args, (err, stdout, stderr) => (err ? reject(new Error(`wg ${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
  });
}

/** `wg showconf` with peers and allowed IPs in a canonical order. */
async function showconf(ifname: string): Promise<string> {
  const [head, ...peers] = (await wg('showconf', ifname)).split('[Peer]\n').map((block) => block.trim());
  const sorted = peers.map((p) => p.replace(/^AllowedIPs = (.*)$/m, (_, list: string) => `AllowedIPs = ${list.split(', ').sort().join(', ')}`));
  return [head, ...sorted.sort()].join('\n[Peer]\n');
}

test('UAPI errnos and get output match wireguard-go', { skip }, async (t) => {
  ensureTools();
  const cleanup = new Cleanup();
  try {
    const wggo = await startWireguardGo(cleanup);
    const goSock = `${SOCKET_DIR}/${wggo.ifname}.sock`;
    const dir = mkdtempSync(join(tmpdir(), 'wgts-uapi-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    const fake = new FakeDevice();
    const ours = await startUapiServer('errno0', fake, { socketDir: dir });
    cleanup.add(() => ours.close());

    await t.test('the same bad (and good) requests get the same errno', async () => {
      for (const [what, request] of CASES) {
        const theirs = await exchange(goSock, request);
        assert.equal(await exchange(ours.path, request), theirs, what);
      }
      assert.equal(fake.peers.has(K(0x77)), false, 'update_only did not create the peer here');
      assert.doesNotMatch(await exchange(goSock, 'get=1\n\n'), new RegExp(K(0x77)), '...nor in wireguard-go');
    });

    await t.test('a listen port in use is EADDRINUSE on both', async () => {
      const udp = createSocket('udp4');
      await new Promise<void>((r) => udp.bind(0, r));
      try {
        const port = udp.address().port;
        fake.busyPorts.add(port);
        const request = `set=1\nlisten_port=${port}\n\n`;
        const theirs = await exchange(goSock, request);
        assert.equal(theirs, 'errno=-98\n\n');
        assert.equal(await exchange(ours.path, request), theirs);
      } finally {
        udp.close();
      }
    });

    // Configured with `wg setconf` (which wg turns into one UAPI set), several kinds of peers.
    const self = wgKeyPair();
    const peerKeys = [wgKeyPair(), wgKeyPair(), wgKeyPair()];
    const psk = sh('wg', ['genpsk']).trim();
    const conf = join(dir, 'wg.conf');
    writeFileSync(conf, [
      '[Interface]', `PrivateKey = ${self.privateKey}`, `ListenPort = ${await freePort()}`, 'FwMark = 0x42', '',
      '[Peer]', `PublicKey = ${peerKeys[0]!.publicKey}`, `PresharedKey = ${psk}`, 'Endpoint = 192.0.2.1:51820',
      'PersistentKeepalive = 25', 'AllowedIPs = 10.1.0.0/16, fd00:1::/64, 10.9.9.9/32', '',
      '[Peer]', `PublicKey = ${peerKeys[1]!.publicKey}`, 'Endpoint = [2001:db8::1]:443',
      'AllowedIPs = 10.2.0.0/24, ::ffff:10.3.0.0/120, 2001:db8:1:2::/64', '',
      '[Peer]', `PublicKey = ${peerKeys[2]!.publicKey}`, 'AllowedIPs = 0.0.0.0/0, ::/0', '',
    ].join('\n'), { mode: 0o600 });
    sh('wg', ['setconf', wggo.ifname, conf]);
    const goGet = await exchange(goSock, 'get=1\n\n');

    await t.test('our serializer fed wireguard-go\'s state prints exactly its get reply', () => {
      const state = parseGetResponse(goGet);
      assert.ok(state, goGet);
      assert.equal(state.errno, 0);
      assert.equal(state.peers.length, 3);
      let ourGet = '';
      writeGetResponse(new FakeDevice(state), (c) => (ourGet += Buffer.from(c).toString()));
      assert.equal(ourGet, goGet);
    });

    await t.test('wg setconf / showconf against our server give what they give against wireguard-go', async () => {
      const name = uniqueName('wgtsu');
      const device = new FakeDevice();
      const served = await startUapiServer(name, device, {});
      cleanup.add(() => served.close());
      await wg('setconf', name, conf);
      assert.equal(device.applied.length, 1, 'one request for the whole file');
      assert.deepEqual(comparable(await exchange(served.path, 'get=1\n\n')), comparable(await exchange(goSock, 'get=1\n\n')));
      assert.equal(await showconf(name), await showconf(wggo.ifname));
      for (const ifname of [name, wggo.ifname]) {
        await wg('set', ifname, 'peer', peerKeys[2]!.publicKey, 'remove', 'peer', peerKeys[0]!.publicKey, 'allowed-ips', '10.7.0.0/16');
      }
      assert.equal(await showconf(name), await showconf(wggo.ifname));
    });
  } finally {
    await cleanup.run();
  }
});
