// UAPI: the protocol session against a fake device (every key, every errno, chunking,
// pipelining, limits, whole-request atomicity), the get serializer and its reader, and the
// unix socket server in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import {
  MAX_LINE_BYTES, MIN_SET_BYTES, UapiSession, maxSetBytes, parseGetResponse, parseSetRequest, writeGetResponse, type UapiSessionOptions,
} from '../src/uapi/protocol.js';
import { startUapiServer } from '../src/uapi/server.js';
import type { PeerState, SetRequest } from '../src/uapi/types.js';
import { FakeDevice, newPeer, peerOpsOf, type AppliedRequest, type PeerOp } from './uapi-fake.js';
import { hex, seededRandom, toHex } from './helpers.js';

const K = (n: number): string => n.toString(16).padStart(64, '0');
const key = (n: number): Uint8Array => hex(K(n));
const decoder = new TextDecoder();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Feeds `chunks` to a fresh session; returns what it wrote and whether it is still open. */
function talk(device: FakeDevice, chunks: (string | Uint8Array)[], opts: UapiSessionOptions & { end?: boolean } = {}): { out: string; open: boolean } {
  let out = '';
  const session = new UapiSession(device, (c) => (out += decoder.decode(c)), opts);
  let open = true;
  for (const c of chunks) if (open) open = session.feed(typeof c === 'string' ? bytes(c) : c);
  if (opts.end && open) {
    session.end();
    open = false;
  }
  return { out, open };
}

/** The errno reply of one `set` request with the given lines, and what apply() received. */
function set(lines: string, device = new FakeDevice()): { errno: string; applied: AppliedRequest[] } {
  const { out } = talk(device, [`set=1\n${lines}\n\n`]);
  return { errno: out, applied: device.applied };
}

function getText(device: FakeDevice): string {
  let out = '';
  writeGetResponse(device, (c) => (out += decoder.decode(c)));
  return out;
}

test('get: an empty device is just errno=0', () => {
  assert.deepEqual(talk(new FakeDevice(), ['get=1\n\n']), { out: 'errno=0\n\n', open: true });
});

test('get: key order, lower-case hex, optional lines, endpoints and prefixes as wireguard-go prints them', () => {
  const priv = hex('a8' + 'ab'.repeat(30) + '6b');
  const a = newPeer(hex('AB'.repeat(32)));
  a.presharedKey = key(1);
  a.endpoint = { family: 4, addr: Uint8Array.of(1, 2, 3, 4), port: 51820 };
  a.lastHandshakeSec = 1700000000;
  a.lastHandshakeNsec = 123456789;
  a.txBytes = 18446744073709551615n;
  a.rxBytes = 42n;
  a.persistentKeepaliveInterval = 25;
  a.allowedIps = [
    { addr: Uint8Array.of(10, 0, 0, 0), cidr: 8 },
    { addr: hex('fd000000000000000000000000000000'), cidr: 64 },
    { addr: hex('00000000000000000000ffff01020300'), cidr: 120 },
  ];
  const b = newPeer(key(2));
  b.endpoint = { family: 6, addr: hex('fe800000000000000000000000000001'), port: 5, scopeId: 3 };
  const c = newPeer(key(3));
  c.endpoint = { family: 6, addr: hex('00000000000000000000ffff01020304'), port: 0 };
  const device = new FakeDevice({ device: { privateKey: priv, listenPort: 51820, fwmark: 7 }, peers: [a, b, c] });
  const peerTail = 'protocol_version=1\n';
  const zeros = 'last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n';
  assert.equal(getText(device), [
    `private_key=${toHex(priv)}\nlisten_port=51820\nfwmark=7\n`,
    `public_key=${'ab'.repeat(32)}\npreshared_key=${K(1)}\n${peerTail}endpoint=1.2.3.4:51820\n`,
    'last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123456789\ntx_bytes=18446744073709551615\nrx_bytes=42\n',
    'persistent_keepalive_interval=25\nallowed_ip=10.0.0.0/8\nallowed_ip=fd00::/64\nallowed_ip=::ffff:1.2.3.0/120\n',
    `public_key=${K(2)}\npreshared_key=${K(0)}\n${peerTail}endpoint=[fe80::1]:5\n${zeros}`,
    `public_key=${K(3)}\npreshared_key=${K(0)}\n${peerTail}endpoint=[::ffff:1.2.3.4]:0\n${zeros}`,
    'errno=0\n\n',
  ].join(''));
});

test('get: no private_key when absent or zero, no listen_port or fwmark when 0', () => {
  const device = new FakeDevice({ device: { privateKey: new Uint8Array(32), listenPort: 0, fwmark: 0 }, peers: [] });
  assert.equal(getText(device), 'errno=0\n\n');
});

test('get: IPv6 text follows Go netip (longest zero run of two or more, first on a tie)', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00010000000000000000000000000000', '1::'],
    ['00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
    ['00010000000000020000000000000003', '1:0:0:2::3'],
    ['00010000000000020000000000030004', '1::2:0:0:3:4'],
    ['00000000000100000000000000000000', '0:0:1::'],
    ['00000000000000000000000001020304', '::102:304'],
    ['00000000000000000000ffff00000000', '::ffff:0.0.0.0'],
    ['20010db8000000000000ff0000428329', '2001:db8::ff00:42:8329'],
    ['abcd0000ef000000000000000000000a', 'abcd:0:ef00::a'],
  ];
  for (const [addr, text] of cases) {
    const p = newPeer(key(1));
    p.allowedIps = [{ addr: hex(addr), cidr: 128 }];
    const out = getText(new FakeDevice({ device: { listenPort: 0, fwmark: 0 }, peers: [p] }));
    assert.match(out, new RegExp(`\nallowed_ip=${text.replace(/\./g, '\\.')}/128\n`), addr);
  }
});

test('get: a large reply goes out in chunks of at most 64 KiB and reads back', () => {
  const peers: PeerState[] = [];
  for (let i = 0; i < 20000; i++) {
    const p = newPeer(key(i + 1));
    p.allowedIps = [{ addr: Uint8Array.of(10, i >> 8, i & 255, 0), cidr: 24 }];
    peers.push(p);
  }
  const chunks: Uint8Array[] = [];
  writeGetResponse(new FakeDevice({ device: { listenPort: 1, fwmark: 0 }, peers }), (c) => chunks.push(c));
  assert.ok(chunks.length > 50);
  assert.ok(chunks.every((c) => c.length <= 65536));
  const parsed = parseGetResponse(chunks.map((c) => decoder.decode(c)).join(''));
  assert.equal(parsed?.peers.length, 20000);
  assert.deepEqual(parsed?.peers[12345]?.allowedIps[0], { addr: Uint8Array.of(10, 48, 57, 0), cidr: 24 });
});

test('parseGetResponse reads back what writeGetResponse wrote', () => {
  const p = newPeer(key(9));
  p.presharedKey = key(4);
  p.endpoint = { family: 6, addr: hex('20010db8000000000000000000000001'), port: 443 };
  p.txBytes = 2n ** 64n - 1n;
  p.lastHandshakeSec = 5;
  p.allowedIps = [{ addr: hex('20010db8000000000000000000000000'), cidr: 32 }, { addr: Uint8Array.of(0, 0, 0, 0), cidr: 0 }];
  const state = { device: { privateKey: key(7), listenPort: 9, fwmark: 0xffffffff }, peers: [p] };
  assert.deepEqual(parseGetResponse(getText(new FakeDevice(state))), { errno: 0, ...state });
  assert.equal(parseGetResponse('errno=-22\n\n')?.errno, 22);
  for (const bad of ['listen_port=1\n', 'bogus=1\nerrno=0\n\n', 'preshared_key=00\nerrno=0\n\n', `public_key=${K(1)}\ntx_bytes=18446744073709551616\nerrno=0\n\n`]) {
    assert.equal(parseGetResponse(bad), null, bad);
  }
});

test('set: every key reaches the device as one request', () => {
  const device = new FakeDevice();
  const { errno } = set([
    `private_key=${'AB'.repeat(32)}`, 'listen_port=51820', 'fwmark=4294967295', 'replace_peers=true',
    `public_key=${K(1)}`, 'protocol_version=1', `preshared_key=${K(2)}`, 'endpoint=1.2.3.4:05',
    'persistent_keepalive_interval=65535', 'replace_allowed_ips=true', 'allowed_ip=10.1.2.3/8',
    'allowed_ip=-fd00::1/64', 'allowed_ip=::ffff:1.2.3.4/120',
    `public_key=${K(3)}`, 'update_only=true', 'endpoint=[fe80::1%7]:5', `public_key=${K(4)}`, 'remove=true',
  ].join('\n'), device);
  assert.equal(errno, 'errno=0\n\n');
  assert.equal(device.applied.length, 1);
  assert.deepEqual(device.applied[0], {
    privateKey: hex('a8' + 'ab'.repeat(30) + '6b'), // clamped, like wireguard-go
    listenPort: 51820,
    fwmark: 4294967295,
    replacePeers: true,
    peers: [
      {
        publicKey: key(1), remove: false, updateOnly: false, presharedKey: key(2),
        endpoint: { family: 4, addr: Uint8Array.of(1, 2, 3, 4), port: 5 }, persistentKeepaliveInterval: 65535,
        replaceAllowedIps: true,
        allowedIps: [
          { addr: Uint8Array.of(10, 0, 0, 0), cidr: 8, remove: false },
          { addr: hex('fd000000000000000000000000000000'), cidr: 64, remove: true },
          { addr: hex('00000000000000000000ffff01020300'), cidr: 120, remove: false },
        ],
      },
      {
        publicKey: key(3), remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [],
        endpoint: { family: 6, addr: hex('fe800000000000000000000000000001'), port: 5, scopeId: 7 },
      },
      { publicKey: key(4), remove: true, updateOnly: false, replaceAllowedIps: false, allowedIps: [] },
    ],
  });
});

test('set: private_key of zeros removes the key; fwmark=0 and listen_port=0 are values', () => {
  const { request } = parseSetRequest(`private_key=${K(0)}\nfwmark=0\nlisten_port=0\n`);
  assert.deepEqual({ ...request, peers: peerOpsOf(request.peers) }, { privateKey: null, fwmark: 0, listenPort: 0, replacePeers: false, peers: [] });
});

test('set: replace_allowed_ips drops the allowed_ip lines before it', () => {
  const { request } = parseSetRequest(`public_key=${K(1)}\nallowed_ip=10.0.0.0/8\nreplace_allowed_ips=true\nallowed_ip=10.1.0.0/16\n`);
  assert.deepEqual(peerOpsOf(request.peers)[0]?.allowedIps, [{ addr: Uint8Array.of(10, 1, 0, 0), cidr: 16, remove: false }]);
});

test('set: thousands of sections with every optional line read back as written, through the growth of the packed arrays', () => {
  const rand = seededRandom(13);
  const int = (n: number): number => Math.floor(rand() * n);
  const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256));
  const v6Text = (a: Uint8Array): string => Array.from({ length: 8 }, (_, i) => ((a[2 * i]! << 8) | a[2 * i + 1]!).toString(16)).join(':');
  const expected: PeerOp[] = [];
  const lines: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const op: PeerOp = { publicKey: randomBytes(32), remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] };
    lines.push(`public_key=${toHex(op.publicKey)}`);
    // A second preshared key or endpoint in a section replaces the first.
    for (let n = int(3); n > 0; n--) {
      op.presharedKey = randomBytes(32);
      lines.push(`preshared_key=${toHex(op.presharedKey)}`);
    }
    for (let n = int(3); n > 0; n--) {
      const v6 = rand() < 0.5;
      const addr = randomBytes(v6 ? 16 : 4);
      op.endpoint = { family: v6 ? 6 : 4, addr, port: int(65536) };
      const scoped = v6 && rand() < 0.3;
      if (scoped) op.endpoint.scopeId = int(2 ** 32);
      lines.push(`endpoint=${v6 ? `[${v6Text(addr)}${scoped ? `%${op.endpoint.scopeId}` : ''}]` : addr.join('.')}:${op.endpoint.port}`);
    }
    if (rand() < 0.3) {
      op.persistentKeepaliveInterval = int(65536);
      lines.push(`persistent_keepalive_interval=${op.persistentKeepaliveInterval}`);
    }
    for (let n = int(5); n > 0; n--) {
      if (rand() < 0.2) {
        op.replaceAllowedIps = true;
        op.allowedIps = [];
        lines.push('replace_allowed_ips=true');
      }
      const v6 = rand() < 0.5;
      const addr = randomBytes(v6 ? 16 : 4);
      const remove = rand() < 0.2;
      op.allowedIps.push({ addr, cidr: addr.length * 8, remove });
      lines.push(`allowed_ip=${remove ? '-' : ''}${v6 ? v6Text(addr) : addr.join('.')}/${addr.length * 8}`);
    }
    if (rand() < 0.1) {
      op.updateOnly = true;
      lines.push('update_only=true');
    }
    if (rand() < 0.1) {
      op.remove = true;
      lines.push('remove=true');
    }
    expected.push(op);
  }
  const { errno, request } = parseSetRequest(lines.join('\n') + '\n');
  assert.equal(errno, 0);
  assert.deepEqual(peerOpsOf(request.peers), expected);
});

test('set: endpoint zones resolve by name first, then as a number', () => {
  const opts = { resolveZone: (name: string) => (name === 'eth0' ? 2 : undefined) };
  const ep = (v: string): unknown => peerOpsOf(parseSetRequest(`public_key=${K(1)}\nendpoint=${v}\n`, opts).request.peers)[0]?.endpoint;
  assert.equal((ep('[fe80::1%eth0]:1') as { scopeId: number }).scopeId, 2);
  assert.equal((ep('[fe80::1%4294967295]:1') as { scopeId: number }).scopeId, 4294967295);
  assert.equal(parseSetRequest(`public_key=${K(1)}\nendpoint=[fe80::1%nosuch]:1\n`, opts).errno, 22);
});

test('set: the errno of every kind of bad line, and apply() is never called', () => {
  const P = `public_key=${K(1)}\n`;
  const cases: [string, number][] = [
    ['no_equals_sign', 71], [`${P}nonsense`, 71],
    ['private_key=zz', 22], [`private_key=${K(1)}0`, 22], [`private_key=${K(1).slice(1)}`, 22], [`private_key=${K(1)} `, 22],
    ['listen_port=65536', 22], ['listen_port=-1', 22], ['listen_port=', 22], ['listen_port=0x10', 22], ['listen_port= 5', 22],
    ['fwmark=4294967296', 22], ['fwmark=0x1', 22], ['fwmark=', 22],
    ['replace_peers=false', 22], ['replace_peers=TRUE', 22], ['replace_peers=', 22],
    ['foo=bar', 22], ['=x', 22], ['PRIVATE_KEY=x', 22], [`${'k'.repeat(100)}=1`, 22],
    ['protocol_version=1', 22], [`preshared_key=${K(1)}`, 22], ['endpoint=1.2.3.4:5', 22], ['allowed_ip=10.0.0.0/8', 22],
    ['public_key=', 22], [`public_key=${K(1)}x`, 22],
    [`${P}listen_port=1`, 22], [`${P}private_key=${K(2)}`, 22], [`${P}replace_peers=true`, 22], [`${P}bogus=1`, 22],
    [`${P}update_only=false`, 22], [`${P}remove=yes`, 22], [`${P}replace_allowed_ips=1`, 22], [`${P}protocol_version=2`, 22],
    [`${P}preshared_key=${K(2).toUpperCase()}0`, 22], [`${P}persistent_keepalive_interval=65536`, 22],
    [`${P}persistent_keepalive_interval=-1`, 22],
    ...['', '1.2.3.4', '1.2.3.4:', ':5', '1.2.3.4:65536', '1.2.3.4:+5', '01.2.3.4:5', '1.2.3.256:5', '[1.2.3.4]:5', '::1:5',
      '[::1]', '[::1:5', 'localhost:5', 'example.com:51820', '[fe80::1%]:5', '1.2.3.4%eth0:5', '[fe80::1%nosuch0]:5',
      '1.2.3:5', '1.2.3.4.5:5', '[1::2::3]:5', '[12345::]:5', '[::g]:5', ' 1.2.3.4:5', '1.2.3.4:5 ']
      .map((v): [string, number] => [`${P}endpoint=${v}`, 22]),
    ...['10.0.0.0/33', '::/129', '10.0.0.0', '10.0.0.0/', '10.0.0.0/+8', '10.0.0.0/08', '1.2.3.4/-1', 'fe80::1%lo/64',
      ' 10.0.0.0/8', '10.0.0.0/8 ', '1:2:3:4:5:6:7:8:9/128', '1:2:3:4:5:6:7:8::/128', '::1:2:3:4:5:6:7:8/128',
      '1.2.3/24', '1.2.3.4/32/32', '', '-', '--10.0.0.0/8', '/8', '1.2.3.4/', '::ffff:1.2.3.4.5/128', '1:2:3:4:5:6:7:1.2.3.4/128']
      .map((v): [string, number] => [`${P}allowed_ip=${v}`, 22]),
  ];
  for (const [lines, errno] of cases) {
    // The bad line comes after good ones: nothing at all may be applied.
    const device = new FakeDevice();
    const r = set(`listen_port=1\n${lines}`, device);
    assert.equal(r.errno, `errno=-${errno}\n\n`, lines);
    assert.equal(device.applied.length, 0, lines);
  }
});

test('set: values wireguard-go accepts', () => {
  const P = `public_key=${K(1)}\n`;
  for (const lines of [
    'listen_port=0', 'listen_port=65535', 'listen_port=00080', `private_key=${K(1).toUpperCase()}`,
    `${P}endpoint=1.2.3.4:0`, `${P}endpoint=[::ffff:1.2.3.4]:5`, `${P}endpoint=[1:2:3:4:5:6:7::]:5`,
    `${P}allowed_ip=0.0.0.0/0`, `${P}allowed_ip=::/0`, `${P}allowed_ip=01234::/64`, `${P}allowed_ip=::1.2.3.4/128`,
    `${P}allowed_ip=1:2:3:4:5:6:1.2.3.4/128`, `${P}allowed_ip=::ffff:1.2.3.4/33`, `${P}allowed_ip=FD00::/8`,
    `${P}update_only=true\nupdate_only=true`, `${P}remove=true\nendpoint=1.2.3.4:5`,
  ]) {
    assert.equal(set(lines).errno, 'errno=0\n\n', lines);
  }
});

test('set: a bad line anywhere means no change, even at the very end', () => {
  const device = new FakeDevice();
  const lines = [`private_key=${K(5)}`, 'listen_port=1'];
  for (let i = 0; i < 100; i++) lines.push(`public_key=${K(i + 10)}`, 'allowed_ip=10.0.0.0/8');
  lines.push('allowed_ip=10.0.0.0/33');
  assert.equal(set(lines.join('\n'), device).errno, 'errno=-22\n\n');
  assert.equal(device.applied.length, 0);
  assert.equal(getText(device), 'errno=0\n\n');
});

test('set: the keys of a request are zeroed once it is applied, or the device threw', async () => {
  class Keeping extends FakeDevice {
    last: SetRequest | undefined;
    later = false;
    override apply(req: SetRequest): number | Promise<number> {
      this.last = req;
      const errno = super.apply(req);
      return this.later ? new Promise((r) => setImmediate(() => r(errno))) : errno;
    }
  }
  const lines = `private_key=${K(5)}\npublic_key=${K(6)}\npreshared_key=${K(7)}\n`;
  const zeroed = (req: SetRequest): boolean => req.privateKey!.every((x) => x === 0) && peerOpsOf(req.peers)[0]!.presharedKey!.every((x) => x === 0);
  const device = new Keeping();
  assert.equal(set(lines, device).errno, 'errno=0\n\n');
  assert.ok(zeroed(device.last!), 'applied at once');
  device.later = true;
  let out = '';
  new UapiSession(device, (c) => (out += decoder.decode(c))).feed(bytes(`set=1\n${lines}\n`));
  assert.ok(!zeroed(device.last!), 'still in use while it applies');
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(out, 'errno=0\n\n');
  assert.ok(zeroed(device.last!), 'applied later');
  device.later = false;
  device.failWith = new Error('boom');
  assert.equal(set(lines, device).errno, 'errno=-55\n\n');
  assert.ok(zeroed(device.last!), 'thrown');
});

test('set: the device errno goes on the wire negated; a throwing device answers 55', () => {
  const device = new FakeDevice();
  device.busyPorts.add(51820);
  assert.equal(set('listen_port=51820', device).errno, 'errno=-98\n\n');
  device.failWith = new Error('boom');
  const errors: unknown[] = [];
  const { out, open } = talk(device, ['set=1\nfwmark=1\n\nget=1\n\n'], { onError: (e) => errors.push(e) });
  assert.deepEqual({ out, open }, { out: 'errno=-55\n\nerrno=0\n\n', open: true });
  assert.deepEqual(errors, [device.failWith]);
});

test('requests split anywhere, and several per connection, answer in order', () => {
  const script = `set=1\nlisten_port=7\r\npublic_key=${K(1)}\nallowed_ip=10.0.0.0/8\n\nget=1\n\nset=1\nfwmark=x\n\nget=1\n\n`;
  const whole = talk(new FakeDevice(), [script]);
  const expectGet = `listen_port=7\npublic_key=${K(1)}\npreshared_key=${K(0)}\nprotocol_version=1\nlast_handshake_time_sec=0\n` +
    'last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.0.0.0/8\nerrno=0\n\n';
  assert.deepEqual(whole, { out: `errno=0\n\n${expectGet}errno=-22\n\n${expectGet}`, open: true });
  const b = bytes(script);
  const byByte = talk(new FakeDevice(), [...b].map((x) => Uint8Array.of(x)));
  assert.deepEqual(byByte, whole);
  for (let cut = 1; cut < b.length; cut += 7) assert.deepEqual(talk(new FakeDevice(), [b.subarray(0, cut), b.subarray(cut)]), whole);
});

test('operations: unknown ones close without a reply; get=1 must be followed by an empty line', () => {
  for (const op of ['bogus\n', '\n', 'get=2\n', 'set=1\r\n', 'get=1\r\n', 'GET=1\n', 'get=1 \n', 'x'.repeat(100)]) {
    assert.deepEqual(talk(new FakeDevice(), [op]), { out: '', open: false }, op);
  }
  assert.deepEqual(talk(new FakeDevice(), ['get=1\nxget=1\n\n']), { out: 'errno=-22\n\nerrno=0\n\n', open: true });
});

test('end of input: a set in progress is applied (as wireguard-go), anything else is dropped', () => {
  const device = new FakeDevice();
  assert.equal(talk(device, ['set=1\nfwmark=9'], { end: true }).out, 'errno=0\n\n');
  assert.equal(device.state.fwmark, 9);
  assert.equal(talk(device, ['set=1\nfwmark=10\n'], { end: true }).out, 'errno=0\n\n');
  assert.equal(talk(device, ['set=1\nfwmark=x\n'], { end: true }).out, 'errno=-22\n\n');
  assert.equal(talk(device, ['get=1\n'], { end: true }).out, '');
  assert.equal(talk(device, ['get=1'], { end: true }).out, '');
  assert.equal(device.state.fwmark, 10);
});

test('limits: a line over 65535 bytes is EIO and closes; a request over the size cap is EMSGSIZE', () => {
  const line = (n: number): string => 'fwmark=' + '0'.repeat(n - 8) + '7';
  assert.deepEqual(talk(new FakeDevice(), [`set=1\n${line(MAX_LINE_BYTES)}\n\n`]), { out: 'errno=0\n\n', open: true });
  assert.deepEqual(talk(new FakeDevice(), [`set=1\n${line(MAX_LINE_BYTES - 1)}\r\n\n`]), { out: 'errno=0\n\n', open: true });
  assert.deepEqual(talk(new FakeDevice(), [`set=1\n${line(MAX_LINE_BYTES)}\r\n\n`]), { out: 'errno=-5\n\n', open: false });
  // Refused as soon as the line is too long, without waiting for its end.
  assert.deepEqual(talk(new FakeDevice(), ['set=1\n', 'fwmark=', '1'.repeat(70000)]), { out: 'errno=-5\n\n', open: false });
  // After a bad line, the first errno is the one reported.
  assert.deepEqual(talk(new FakeDevice(), [`set=1\nfoo=1\n${line(70000)}`]), { out: 'errno=-22\n\n', open: false });
  const tooLarge: number[] = [];
  const small = { maxRequestBytes: 100, onTooLarge: (limit: number) => void tooLarge.push(limit) };
  assert.deepEqual(talk(new FakeDevice(), [`set=1\n${'fwmark=1\n'.repeat(11)}\n`], small), { out: 'errno=0\n\n', open: true });
  // Over the cap: EMSGSIZE as soon as it is passed, nothing applied; the rest of the request is
  // read and dropped (the client reads its reply only once it has written it all), then closed.
  const device = new FakeDevice();
  assert.deepEqual(talk(device, [`set=1\n${'fwmark=1\n'.repeat(12)}`], small), { out: 'errno=-90\n\n', open: true });
  assert.deepEqual(talk(device, [`set=1\n${'fwmark=1\n'.repeat(12)}`, 'fwmark=2\r', '\nfwmark=3\n\r', '\n', 'get=1\n\n'], small), { out: 'errno=-90\n\n', open: false });
  // The blank line that ends the request is the byte over the cap: nothing more to skip.
  assert.deepEqual(talk(device, [`set=1\n${'fwmark=01\n'.repeat(10)}\nget=1\n\n`], small), { out: 'errno=-90\n\n', open: false });
  assert.deepEqual(talk(device, [`set=1\n${'fwmark=1\n'.repeat(30)}`], { ...small, end: true }), { out: 'errno=-90\n\n', open: false });
  assert.equal(device.applied.length, 0);
  assert.deepEqual(tooLarge, [100, 100, 100, 100]);
  // A bad line before the cap keeps its errno, as any first error does.
  assert.deepEqual(talk(new FakeDevice(), [`set=1\nfoo=1\n${'fwmark=1\n'.repeat(12)}\n`], small), { out: 'errno=-22\n\n', open: false });
});

test('the set cap scales with the peers the device can hold, with room for a full setconf', () => {
  assert.equal(maxSetBytes(1), MIN_SET_BYTES);
  assert.equal(maxSetBytes(65536), 32 << 20);
  assert.equal(maxSetBytes(1 << 20), 256 << 20);
  // What `wg setconf` sends for one peer with a preshared key and an IPv4 and an IPv6 address
  // (a server's client): it fits a million times over, and at the default capacity even the
  // longest peer (IPv6 endpoint and a keepalive too) fits 65,536 times.
  const serverPeer = `public_key=${K(1)}\npreshared_key=${K(2)}\nreplace_allowed_ips=true\nallowed_ip=10.1.2.3/32\nallowed_ip=fd00::1:1:203/128\n`;
  const fullPeer = serverPeer + 'endpoint=[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:51820\npersistent_keepalive_interval=25\n';
  assert.ok(serverPeer.length * (1 << 20) <= maxSetBytes(1 << 20), `${serverPeer.length} bytes a peer`);
  assert.ok(fullPeer.length * 65536 <= maxSetBytes(65536), `${fullPeer.length} bytes a peer`);
});

test('fuzz: mutated requests never throw and always get a well-formed answer', () => {
  const rnd = seededRandom(7);
  const base = bytes(`set=1\nprivate_key=${K(3)}\nlisten_port=51820\npublic_key=${K(1)}\nendpoint=[fd00::1%3]:5\n` +
    'allowed_ip=10.0.0.0/8\nallowed_ip=-::ffff:1.2.3.4/120\npersistent_keepalive_interval=25\n\nget=1\n\n');
  const alphabet = bytes('0123456789abcdefABCDEF:.[]%/-=\n\r xg');
  for (let round = 0; round < 3000; round++) {
    const b = Uint8Array.from(base);
    for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) b[Math.floor(rnd() * b.length)] = alphabet[Math.floor(rnd() * alphabet.length)]!;
    const cut = Math.floor(rnd() * b.length);
    const device = new FakeDevice();
    const { out } = talk(device, [b.subarray(0, cut), b.subarray(cut)], { end: rnd() < 0.5 });
    // Replies only: errno lines, each after the lines of a get, never anything half-written.
    assert.match(out, /^(([a-z_]+=[^\n]*\n)*errno=(0|-\d+)\n\n)*$/, decoder.decode(b));
    assert.ok(device.applied.length <= 1);
  }
});

// ---- the socket server ----

interface Conn {
  request(text: string): Promise<string>;
  close(): void;
}

/** A client that sends requests on one connection and reads each reply to its errno line. */
function connect(path: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let parts: string[] = [];
    let tail = '';
    let waiter: (() => void) | undefined;
    c.on('data', (d) => {
      const text = d.toString();
      parts.push(text);
      tail = (tail + text).slice(-32);
      waiter?.();
    });
    c.once('error', reject);
    c.once('connect', () => resolve({
      request: (text) => new Promise((res) => {
        // Replies can be large: only the tail is looked at, the text joined once.
        waiter = () => {
          if (!/(^|\n)errno=-?\d+\n\n$/.test(tail)) return;
          res(parts.join(''));
          parts = [];
          tail = '';
          waiter = undefined;
        };
        c.write(text);
      }),
      close: () => c.destroy(),
    }));
  });
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'wgts-uapi-'));
}

test('server: socket 0600 in a 0755 directory; many concurrent clients; close removes the file', async () => {
  const root = tempDir();
  const dir = join(root, 'run', 'wireguard');
  const device = new FakeDevice();
  const server = await startUapiServer('wgt0', device, { socketDir: dir });
  try {
    assert.equal(server.path, join(dir, 'wgt0.sock'));
    assert.equal(statSync(server.path).mode & 0o777, 0o600);
    assert.ok(statSync(server.path).isSocket());
    assert.equal(statSync(dir).mode & 0o777, 0o755);
    const clients = await Promise.all(Array.from({ length: 20 }, () => connect(server.path)));
    const replies = await Promise.all(clients.map((c, i) => c.request(`set=1\npublic_key=${K(i + 1)}\n\n`)));
    assert.ok(replies.every((r) => r === 'errno=0\n\n'));
    const gets = await Promise.all(clients.map((c) => c.request('get=1\n\n')));
    assert.ok(gets.every((g) => parseGetResponse(g)?.peers.length === 20));
    clients.forEach((c) => c.close());
  } finally {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  }
  assert.equal(existsSync(server.path), false);
});

test('server: a large get streams through the socket', async () => {
  const dir = tempDir();
  const peers: PeerState[] = [];
  for (let i = 0; i < 50000; i++) peers.push(newPeer(key(i + 1)));
  const server = await startUapiServer('wgt1', new FakeDevice({ device: { listenPort: 5, fwmark: 0 }, peers }), { socketDir: dir });
  try {
    const c = await connect(server.path);
    const reply = await c.request('get=1\n\n');
    assert.equal(parseGetResponse(reply)?.peers.length, 50000);
    c.close();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: a set over the cap is refused with EMSGSIZE and a log line, and nothing is applied', async () => {
  const dir = tempDir();
  const lines: string[] = [];
  const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
  const device = new FakeDevice();
  const server = await startUapiServer('wgt5', device, { socketDir: dir, maxRequestBytes: 4096, logger });
  try {
    const reply = await new Promise<string>((resolve) => {
      const c = createConnection(server.path);
      let out = '';
      c.on('data', (d) => (out += d.toString()));
      c.on('close', () => resolve(out));
      c.on('error', () => undefined);
      c.write(`set=1\n${`public_key=${K(1)}\nallowed_ip=10.0.0.1/32\n`.repeat(100)}\n`);
    });
    assert.equal(reply, 'errno=-90\n\n');
    assert.equal(device.applied.length, 0);
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]!) as { msg: string; limit: number };
    assert.match(line.msg, /set refused.*nothing applied/);
    assert.equal(line.limit, 4096);
    const c = await connect(server.path);
    assert.equal(await c.request(`set=1\npublic_key=${K(1)}\n\n`), 'errno=0\n\n', 'the next client is served');
    c.close();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: a refused connection is closed after its reply', async () => {
  const dir = tempDir();
  const server = await startUapiServer('wgt2', new FakeDevice(), { socketDir: dir });
  try {
    const reply = await new Promise<string>((resolve) => {
      const c = createConnection(server.path);
      let out = '';
      c.on('data', (d) => (out += d.toString()));
      c.on('close', () => resolve(out));
      c.on('error', () => undefined);
      c.write(`set=1\nfwmark=${'1'.repeat(70000)}\n\n`);
    });
    assert.equal(reply, 'errno=-5\n\n');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: a stale socket is replaced, a live one is refused', async () => {
  const dir = tempDir();
  const path = join(dir, 'wgt3.sock');
  // A daemon that dies without removing its socket.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(statSync(path).isSocket());
  const server = await startUapiServer('wgt3', new FakeDevice(), { socketDir: dir });
  try {
    const c = await connect(path);
    assert.equal(await c.request('get=1\n\n'), 'errno=0\n\n');
    c.close();
    await assert.rejects(startUapiServer('wgt3', new FakeDevice(), { socketDir: dir }), /interface wgt3 is already served by another process/);
    assert.ok(existsSync(path), 'the live socket is left alone');
  } finally {
    await server.close();
  }
  // Someone else's live listener (not ours) is refused the same way.
  const other = createServer().listen(path);
  await new Promise((r) => other.once('listening', r));
  await assert.rejects(startUapiServer('wgt3', new FakeDevice(), { socketDir: dir }), /already served/);
  await new Promise((r) => other.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('server: deleting the socket file fires onSocketDeleted', async () => {
  const dir = tempDir();
  const server = await startUapiServer('wgt4', new FakeDevice(), { socketDir: dir });
  try {
    const fired = new Promise<void>((resolve) => server.onSocketDeleted(resolve));
    unlinkSync(server.path);
    await fired;
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: interface names that are not a file name are refused, a path too long too', async () => {
  for (const name of ['', 'a/b', '..']) await assert.rejects(startUapiServer(name, new FakeDevice(), { socketDir: tmpdir() }), /invalid interface name/);
  await assert.rejects(startUapiServer('x'.repeat(120), new FakeDevice(), { socketDir: tmpdir() }), /socket path too long/);
});

test('get: a large reply is written across event-loop turns, and what came behind it waits its turn', async () => {
  const peers: PeerState[] = [];
  for (let i = 0; i < 20_000; i++) {
    const p = newPeer(key(i + 1));
    p.allowedIps = [{ addr: Uint8Array.of(10, i >> 16, (i >> 8) & 255, i & 255), cidr: 32 }];
    peers.push(p);
  }
  const device = new FakeDevice({ device: { listenPort: 51820, fwmark: 0 }, peers });
  const whole = getText(device);
  let out = '';
  let closed = false;
  const session = new UapiSession(device, (c) => (out += decoder.decode(c)), { onClose: () => (closed = true) });
  // Two gets and a set in one chunk, then the client ends while the first reply is running.
  assert.ok(session.feed(bytes(`get=1\n\nset=1\nlisten_port=1\n\nget=1\n\n`)));
  let turns = 0;
  const ticking = setInterval(() => turns++, 0);
  assert.ok(out.length < whole.length, 'the first reply is not written in one go');
  assert.equal(device.applied.length, 0, 'the set waits for the get before it');
  assert.equal(session.end(), false, 'still writing');
  const deadline = Date.now() + 20_000;
  while (!closed && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  clearInterval(ticking);
  assert.ok(closed, 'onClose after the last reply');
  assert.ok(turns > 0, 'timers ran while the replies were written');
  assert.equal(out, whole + 'errno=0\n\n' + whole.replace('listen_port=51820', 'listen_port=1'));
});

test('get: an aborted session stops writing', async () => {
  const peers = Array.from({ length: 20_000 }, (_, i) => newPeer(key(i + 1)));
  let chunks = 0;
  const session = new UapiSession(new FakeDevice({ device: { listenPort: 0, fwmark: 0 }, peers }), () => chunks++);
  session.feed(bytes('get=1\n\n'));
  session.abort();
  const after = chunks;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(chunks, after);
});

test('set: an apply that completes later holds its reply, and what came behind it waits its turn', async () => {
  class SlowDevice extends FakeDevice {
    release: (() => void) | undefined;
    override apply(req: SetRequest): number | Promise<number> {
      const errno = super.apply(req);
      if (req.listenPort === undefined) return errno;
      return new Promise<number>((resolve) => (this.release = () => resolve(errno as number)));
    }
  }
  const device = new SlowDevice();
  let out = '';
  let closed = false;
  const session = new UapiSession(device, (c) => (out += decoder.decode(c)), { onClose: () => (closed = true) });
  assert.ok(session.feed(bytes('set=1\nlisten_port=51999\n\nget=1\n\nset=1\nfwmark=7\n\n')));
  assert.equal(session.busy, true);
  assert.equal(out, '', 'no reply before the apply completes');
  assert.equal(device.applied.length, 1, 'the second set waits');
  assert.equal(session.end(), false, 'the client ended, a reply is still to come');
  device.release!();
  const deadline = Date.now() + 5000;
  while (!closed && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.ok(closed);
  assert.equal(out, 'errno=0\n\nlisten_port=51999\nerrno=0\n\nerrno=0\n\n');
  assert.equal(device.applied.length, 2);
  assert.equal(device.state.fwmark, 7);
});

test('get: a set still being applied (another connection\'s) is waited for, so the reply shows all of it', async () => {
  class SteppedDevice extends FakeDevice {
    release: (() => void) | undefined;
    private pending: Promise<void> | undefined;
    get setting(): Promise<void> | undefined {
      return this.pending;
    }
    override apply(req: SetRequest): number | Promise<number> {
      const errno = super.apply(req) as number;
      const done = new Promise<number>((resolve) => (this.release = () => resolve(errno)));
      this.pending = done.then(() => {
        this.pending = undefined;
      });
      return done;
    }
  }
  const device = new SteppedDevice();
  let outA = '';
  let outB = '';
  const a = new UapiSession(device, (c) => (outA += decoder.decode(c)));
  const b = new UapiSession(device, (c) => (outB += decoder.decode(c)));
  assert.ok(a.feed(bytes('set=1\nfwmark=9\n\n')));
  assert.ok(b.feed(bytes('get=1\n\n')));
  assert.equal(b.busy, true, 'the get waits for the set');
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  assert.equal(outB, '', 'no get reply while the set applies');
  device.release!();
  const deadline = Date.now() + 5000;
  while ((outA === '' || outB === '') && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.equal(outA, 'errno=0\n\n');
  assert.equal(outB, 'fwmark=9\nerrno=0\n\n');
  assert.equal(b.busy, false);
});
