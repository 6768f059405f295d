// The server mode without root: the wg-quick file round trip, client names, every validation
// message of the command line, the QR code, and the UAPI client against the UAPI server with a
// fake device. The store, the state lock and durable writes: test/store.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIPv4, nextFreeAddress, parseEndpoint, parseIPv4, parseServerAddress, type Subnet4 } from '../src/server/addresses.js';
import {
  clientAddress, clientNameProblem, formatClientConfig, formatServerConfig, parseServerConfig, type ServerConfig,
} from '../src/server/config.js';
import { isBase64Key, keyHex, newKeyPair, newPresharedKey } from '../src/server/keys.js';
import { parseServerArgs, type ServerOptions } from '../src/server/options.js';
import { QUIET_ZONE, qrMatrix, renderQr } from '../src/server/qr.js';
import { UapiError, uapiAlive, uapiGet, uapiSet } from '../src/uapi/client.js';
import { startUapiServer } from '../src/uapi/server.js';
import { FakeDevice } from './uapi-fake.js';

const BIN = fileURLToPath(new URL('../../bin/wireguard-ts', import.meta.url));
const subnet = (s: string): Subnet4 => parseServerAddress(s) as Subnet4;
const ip = (s: string): number => parseIPv4(s)!;

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-server-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sampleConfig(): ServerConfig {
  const k = (): string => newKeyPair().publicKey;
  return {
    privateKey: newKeyPair().privateKey,
    address: subnet('10.8.0.1/24'),
    listenPort: 51820,
    mtu: 1420,
    endpoint: 'vpn.example.com:4500',
    extra: ['PostUp = iptables -A FORWARD -i %i -j ACCEPT', '# a hand-written note'],
    clients: [
      { name: 'alice', publicKey: k(), presharedKey: newPresharedKey(), allowedIps: ['10.8.0.2/32'], extra: [] },
      { name: 'bob.phone', publicKey: k(), presharedKey: newPresharedKey(), allowedIps: ['10.8.0.3/32', 'fd00::3/128'], dns: ['1.1.1.1', 'fd00::53'], routes: ['10.0.0.0/8'], extra: ['# keep me'] },
      { name: 'c_3', publicKey: k(), allowedIps: ['10.8.0.9/32'], extra: [] },
    ],
  };
}

test('config: write then parse gives the same data, and rewriting is byte-identical', () => {
  const c = sampleConfig();
  const text = formatServerConfig(c);
  const back = parseServerConfig(text, 'wg0.conf');
  assert.deepEqual(back, c);
  assert.equal(formatServerConfig(back), text);
});

test('config: a hand-edited file (lower-case keys, inline comments, no MTU, no endpoint) parses', () => {
  const { privateKey } = newKeyPair();
  const pub = newKeyPair().publicKey;
  const text = `# my server\n[interface]\nprivatekey = ${privateKey}  # secret\naddress=10.9.0.5/16\nlistenport = 4000\n\n[peer]\n# Name = x\npublickey = ${pub}\nallowedips = 10.9.0.7, fd00::7/128\n`;
  const c = parseServerConfig(text, 'f');
  assert.equal(c.privateKey, privateKey);
  assert.deepEqual(c.address, subnet('10.9.0.5/16'));
  assert.equal(c.listenPort, 4000);
  assert.equal(c.mtu, 1420);
  assert.equal(c.endpoint, undefined);
  assert.deepEqual(c.clients[0]!.allowedIps, ['10.9.0.7', 'fd00::7/128']);
  assert.equal(clientAddress(c, c.clients[0]!), ip('10.9.0.7'));
});

test('config: errors name the file and line', () => {
  const { privateKey, publicKey } = newKeyPair();
  const head = `[Interface]\nPrivateKey = ${privateKey}\nAddress = 10.8.0.1/24\nListenPort = 1\n`;
  const cases: [string, string][] = [
    [`[Interface]\nAddress = 10.8.0.1/24\nListenPort = 1\n`, 'f: [Interface] has no PrivateKey'],
    [`[Interface]\nPrivateKey = abc\n`, 'f:2: PrivateKey is not a base64 key'],
    [`${head}ListenPort = 70000\n`, 'f:5: ListenPort: 70000 is not a port number (1-65535)'],
    [`[Interface]\nAddress = 10.8.0.255/24\n`, "f:2: Address: 10.8.0.255/24 is the subnet's broadcast address; give the server's own address, like 10.8.0.1/24"],
    [`${head}[Peer]\nPublicKey = ${publicKey}\n`, 'f:5: [Peer] without a "# Name = ..." comment (wireguard-ts names every client)'],
    [`${head}[Peer]\n# Name = a b\nPublicKey = ${publicKey}\n`, `f:5: "a b" is not a client name (1-32 letters, digits, '.', '_' or '-', starting with a letter or digit)`],
    [`${head}[Peer]\n# Name = a\n[Peer]\n# Name = a\nPublicKey = ${publicKey}\n`, 'f:5: [Peer] a has no PublicKey'],
    [`${head}[Peer]\n# Name = a\nPublicKey = ${publicKey}\n[Peer]\n# Name = a\nPublicKey = ${publicKey}\n`, 'f:8: a second client named a'],
    [`${head}[Peer]\n# Name = a\nAllowedIPs = 10.8.0.300/32\n`, 'f:7: AllowedIPs: 10.8.0.300/32 is not a list of prefixes'],
    [`[Peer]\n`, 'f:1: [Peer] before [Interface]'],
    [`${head}[Interface]\n`, 'f:5: [Interface] must come first and only once'],
    [`PrivateKey = ${privateKey}\n`, 'f:1: text before [Interface]'],
    [`${head}MTU = 576\n`, 'f:5: MTU: 576 is not an MTU (1280-9000)'],
    [`${head}[Peer]\n# Name = a\n# ClientDNS = 1.1.1.1, -x\n`, 'f:7: ClientDNS: "1.1.1.1, -x" is not a list of IP addresses or domain names'],
    [`${head}[Peer]\n# Name = a\n# ClientAllowedIPs = 0.0.0.0/0, ::/129\n`, 'f:7: ClientAllowedIPs: "0.0.0.0/0, ::/129" is not a list of prefixes'],
    [`[Interface]\n# Endpoint = vpn example\n`, 'f:2: Endpoint: "vpn example" is not HOST or HOST:PORT (HOST: an IPv4 address, [IPv6 address] or DNS name)'],
  ];
  for (const [text, message] of cases) assert.throws(() => parseServerConfig(text, 'f'), { message }, message);
});

test('client config: what wg-quick and the apps read; DNS only when given', () => {
  const text = formatClientConfig({
    privateKey: 'P'.repeat(43) + '=', address: ip('10.8.0.2'), serverPublicKey: 'S'.repeat(43) + '=',
    presharedKey: 'Q'.repeat(43) + '=', endpoint: '192.0.2.1:51820', routes: ['0.0.0.0/0', '::/0'],
  });
  assert.equal(text, `[Interface]\nPrivateKey = ${'P'.repeat(43)}=\nAddress = 10.8.0.2/32\n\n[Peer]\nPublicKey = ${'S'.repeat(43)}=\n` +
    `PresharedKey = ${'Q'.repeat(43)}=\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n`);
  const withDns = formatClientConfig({ privateKey: 'k', address: 1, serverPublicKey: 's', endpoint: 'e:1', routes: ['10.0.0.0/8'], dns: ['1.1.1.1', 'lan'] });
  assert.match(withDns, /\nDNS = 1\.1\.1\.1, lan\n/);
  assert.doesNotMatch(withDns, /PresharedKey/);
});

test('addresses: skip network, server and broadcast; lowest gap first; a full subnet has none', () => {
  const s = subnet('10.8.0.1/24');
  assert.equal(formatIPv4(nextFreeAddress(s, [])!), '10.8.0.2');
  assert.equal(formatIPv4(nextFreeAddress(s, [ip('10.8.0.2'), ip('10.8.0.4')])!), '10.8.0.3');
  const all = Array.from({ length: 253 }, (_, i) => ip(`10.8.0.${i + 2}`));
  assert.equal(formatIPv4(nextFreeAddress(s, all.slice(0, 252))!), '10.8.0.254');
  assert.equal(nextFreeAddress(s, all), undefined);
  // The server need not be .1: .1 is then free, and the server's own address is skipped.
  const mid = subnet('192.168.7.2/29');
  assert.deepEqual([nextFreeAddress(mid, []), nextFreeAddress(mid, [ip('192.168.7.1')])].map((a) => formatIPv4(a!)), ['192.168.7.1', '192.168.7.3']);
  const tiny = subnet('10.0.0.1/30');
  assert.equal(formatIPv4(nextFreeAddress(tiny, [])!), '10.0.0.2');
  assert.equal(nextFreeAddress(tiny, [ip('10.0.0.2')]), undefined);
});

test('client names: a portable set that is safe as a file name', () => {
  for (const ok of ['alice', 'Bob', 'phone-2', 'a.b_c', '0', 'x'.repeat(32)]) assert.equal(clientNameProblem(ok), undefined, ok);
  for (const bad of ['', '-a', '.hidden', '_x', 'a/b', '../x', 'a b', 'x'.repeat(33), 'é', 'a\n']) assert.ok(clientNameProblem(bad), JSON.stringify(bad));
});

test('keys: base64 as wg genkey prints them; hex for UAPI', () => {
  const { privateKey, publicKey } = newKeyPair();
  assert.ok(isBase64Key(privateKey) && isBase64Key(publicKey));
  const raw = Buffer.from(privateKey, 'base64');
  assert.equal(raw[0]! & 7, 0, 'clamped low bits');
  assert.equal(raw[31]! & 0xc0, 0x40, 'clamped high bits');
  assert.equal(keyHex(publicKey), Buffer.from(publicKey, 'base64').toString('hex'));
  assert.equal(isBase64Key('A'.repeat(43) + '='), true);
  assert.equal(isBase64Key('A'.repeat(42) + 'B='), false, 'non-zero padding bits');
});

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): ServerOptions => parseServerArgs(argv, env) as ServerOptions;

test('options: defaults, flags, --flag=value, environment, and the flag winning over the environment', () => {
  assert.deepEqual(parse(['up']), { command: 'up', ifname: 'wg0', stateDir: '/var/lib/wireguard-ts', qr: true });
  const o = parse(['up', '--interface', 'wgx', '--port=4000', '--address', '10.1.2.3/16', '--mtu', '1380', '--workers', '2',
    '--endpoint', 'vpn.example.com', '--dns', '1.1.1.1, fd00::53', '--allowed-ips', '10.0.0.0/8,fd00::/64', '--client', 'me', '--no-qr', '--state-dir', 'rel/dir']);
  assert.deepEqual(o, {
    command: 'up', ifname: 'wgx', stateDir: join(process.cwd(), 'rel/dir'), qr: false, port: 4000, address: subnet('10.1.2.3/16'), mtu: 1380,
    workers: 2, endpoint: 'vpn.example.com', dns: ['1.1.1.1', 'fd00::53'], allowedIps: ['10.0.0.0/8', 'fd00::/64'], client: 'me',
  });
  const env = { WG_TS_INTERFACE: 'wge', WG_TS_PORT: '5000', WG_TS_STATE_DIR: '/s', WG_TS_NO_QR: '1', WG_TS_ENDPOINT: '[fd00::1]:7' };
  assert.deepEqual(parse(['up'], env), { command: 'up', ifname: 'wge', stateDir: '/s', qr: false, port: 5000, endpoint: '[fd00::1]:7' });
  assert.equal(parse(['up', '--port', '6000'], env).port, 6000);
  assert.equal(parse(['up'], { WG_TS_NO_QR: '0' }).qr, true);
  // A variable that does not apply to the command is ignored, even when malformed.
  assert.deepEqual(parse(['add-client', 'bob'], { WG_TS_PORT: 'x' }), { command: 'add-client', name: 'bob', ifname: 'wg0', stateDir: '/var/lib/wireguard-ts', qr: true });
  assert.equal(parseServerArgs(['up', '--help'], {}), 'help');
});

test('options: every bad value is refused with a message naming its flag or variable', () => {
  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [['start'], {}, 'unknown command start'],
    [['up', '--bogus'], {}, 'unknown option --bogus (wireguard-ts help lists them)'],
    [['list-clients', '--port', '1'], {}, '--port does not apply to list-clients'],
    [['up', '--no-qr=yes'], {}, '--no-qr takes no value'],
    [['up', '--port'], {}, '--port needs a value (N)'],
    [['down', 'now'], {}, 'unexpected argument now'],
    [['add-client'], {}, 'add-client needs a client NAME'],
    [['add-client', 'a', 'b'], {}, 'unexpected argument b'],
    [['show-client', '../etc'], {}, "show-client: ../etc is not a client name (1-32 letters, digits, '.', '_' or '-', starting with a letter or digit)"],
    [['up', '--client', 'a b'], {}, `--client: "a b" is not a client name (1-32 letters, digits, '.', '_' or '-', starting with a letter or digit)`],
    [['up', '--interface', 'this-is-too-long0'], {}, "--interface: this-is-too-long0 is not an interface name (1-15 characters without spaces, '/', ':' or '%')"],
    [['up'], { WG_TS_INTERFACE: 'a/b' }, "WG_TS_INTERFACE: a/b is not an interface name (1-15 characters without spaces, '/', ':' or '%')"],
    [['up', '--state-dir='], {}, '--state-dir: empty path'],
    [['up', '--port', '70000'], {}, '--port: 70000 is not a port number (1-65535)'],
    [['up', '--port', '0'], {}, '--port: 0 is not a port number (1-65535)'],
    [['up', '--port', '0x50'], {}, '--port: 0x50 is not a port number (1-65535)'],
    [['up'], { WG_TS_PORT: 'abc' }, 'WG_TS_PORT: abc is not a port number (1-65535)'],
    [['up', '--mtu', '100'], {}, '--mtu: 100 is not an MTU (1280-9000)'],
    [['up', '--workers', '0'], {}, '--workers: 0 is not a number of workers (1-64)'],
    [['up', '--address', '10.8.0.1'], {}, '--address: 10.8.0.1 is not an IPv4 address with a prefix length, like 10.8.0.1/24'],
    [['up', '--address', 'fd00::1/64'], {}, '--address: fd00::1/64 is not an IPv4 address with a prefix length, like 10.8.0.1/24'],
    [['up', '--address', '10.8.0.1/31'], {}, '--address: 10.8.0.1/31: the prefix length must be from 8 to 30, so the subnet has room for clients'],
    [['up', '--address', '10.0.0.1/7'], {}, '--address: 10.0.0.1/7: the prefix length must be from 8 to 30, so the subnet has room for clients'],
    [['up', '--address', '10.8.0.0/24'], {}, "--address: 10.8.0.0/24 is the subnet's network address; give the server's own address, like 10.8.0.1/24"],
    [['up', '--address', '10.8.1.255/23'], {}, "--address: 10.8.1.255/23 is the subnet's broadcast address; give the server's own address, like 10.8.0.1/23"],
    [['up', '--address', '010.8.0.1/24'], {}, '--address: 010.8.0.1/24 is not an IPv4 address with a prefix length, like 10.8.0.1/24'],
    [['up', '--endpoint', 'a b'], {}, '--endpoint: "a b" is not HOST or HOST:PORT (HOST: an IPv4 address, [IPv6 address] or DNS name)'],
    [['up', '--endpoint', '1.2.3.999'], {}, '--endpoint: 1.2.3.999 is not HOST or HOST:PORT (HOST: an IPv4 address, [IPv6 address] or DNS name)'],
    [['add-client', 'x', '--endpoint', 'host:99999'], {}, '--endpoint: 99999 is not a port number (1-65535)'],
    [['up', '--endpoint', '[fd00::zz]:1'], {}, '--endpoint: [fd00::zz]:1: fd00::zz is not an IPv6 address'],
    [['up'], { WG_TS_ENDPOINT: 'x:' }, 'WG_TS_ENDPOINT: "" is not a port number (1-65535)'],
    [['add-client', 'x', '--dns', '1.1.1.1,,'], {}, '--dns: "" is not an IP address or a domain name'],
    [['add-client', 'x', '--dns', ' , '], {}, '--dns: empty list'],
    [['add-client', 'x', '--dns', '300.1.1.1'], {}, '--dns: 300.1.1.1 is not an IP address or a domain name'],
    [['add-client', 'x', '--allowed-ips', '0.0.0.0/0, 10.0.0.0/33'], {}, '--allowed-ips: 10.0.0.0/33 is not an IP prefix like 10.0.0.0/8 or ::/0'],
    [['add-client', 'x'], { WG_TS_ALLOWED_IPS: 'fe80::1%eth0/64' }, 'WG_TS_ALLOWED_IPS: fe80::1%eth0/64 is not an IP prefix like 10.0.0.0/8 or ::/0'],
  ];
  for (const [argv, env, message] of cases) {
    assert.throws(() => parseServerArgs(argv, env), (e: Error) => {
      assert.equal(e.message.split('\n')[0], message);
      return true;
    }, argv.join(' '));
  }
});

test('endpoint: the forms clients may be told', () => {
  assert.deepEqual(parseEndpoint('vpn.example.com'), { host: 'vpn.example.com' });
  assert.deepEqual(parseEndpoint('192.0.2.1:4500'), { host: '192.0.2.1', port: 4500 });
  assert.deepEqual(parseEndpoint('fd00::1'), { host: '[fd00::1]' });
  assert.deepEqual(parseEndpoint('[fd00::1]:51820'), { host: '[fd00::1]', port: 51820 });
  assert.deepEqual(parseEndpoint('[fd00::1]'), { host: '[fd00::1]' });
  assert.equal(typeof parseEndpoint('-bad-.com'), 'string');
});

test('QR: the rendering is the encoder matrix, two rows per line, with a light quiet zone', () => {
  const text = formatClientConfig({
    privateKey: newKeyPair().privateKey, address: ip('10.8.0.2'), serverPublicKey: newKeyPair().publicKey,
    presharedKey: newPresharedKey(), endpoint: '[2001:db8:1234:5678:9abc:def0:1234:5678]:51820', routes: ['0.0.0.0/0', '::/0'], dns: ['1.1.1.1', '2606:4700:4700::1111'],
  });
  const m = qrMatrix(text);
  assert.equal((m.length - 17) % 4, 0, 'a QR version size');
  assert.ok(m.length <= 77, `version ${(m.length - 17) / 4} fits a terminal`);
  // Finder patterns: dark 7x7 ring at three corners.
  for (const [r, c] of [[0, 0], [0, m.length - 7], [m.length - 7, 0]] as const) {
    assert.ok([0, 6].every((d) => Array.from({ length: 7 }, (_, i) => m[r + d]![c + i] && m[r + i]![c + d]).every(Boolean)));
  }
  const lines = renderQr(text).trimEnd().split('\n').map((l) => l.replace(/\x1b\[[\d;]*m/g, ''));
  const size = m.length + 2 * QUIET_ZONE;
  assert.equal(lines.length, Math.ceil(size / 2));
  const dark = (r: number, c: number): boolean => m[r - QUIET_ZONE]?.[c - QUIET_ZONE] ?? false;
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const ch = [...lines[r >> 1]!][c]!;
      const lightTop = ch === '\u2588' || ch === '\u2580';
      const lightBottom = ch === '\u2588' || ch === '\u2584';
      assert.equal(!(r % 2 === 0 ? lightTop : lightBottom), dark(r, c), `module ${r},${c}`);
    }
  }
});

test('UAPI client: set and get against the UAPI server; errno becomes a UapiError', async (t) => {
  const socketDir = tmp(t);
  const device = new FakeDevice();
  device.busyPorts.add(4242);
  const server = await startUapiServer('wgc', device, { socketDir });
  t.after(() => server.close());
  assert.equal(await uapiAlive('wgc', socketDir), true);
  assert.equal(await uapiAlive('none', socketDir), false);
  const peer = newKeyPair().publicKey;
  await uapiSet('wgc', ['listen_port=5000', `public_key=${keyHex(peer)}`, 'allowed_ip=10.8.0.2/32'], socketDir);
  const got = await uapiGet('wgc', socketDir);
  assert.equal(got.device.listenPort, 5000);
  assert.deepEqual(got.peers.map((p) => Buffer.from(p.publicKey).toString('base64')), [peer]);
  await assert.rejects(uapiSet('wgc', ['listen_port=4242'], socketDir), (e: Error) => e instanceof UapiError && e.errno === 98);
  await assert.rejects(uapiSet('wgc', ['bogus=1'], socketDir), (e: Error) => e instanceof UapiError && e.errno === 22);
  assert.equal((await uapiGet('wgc', socketDir)).device.listenPort, 5000, 'the refused requests changed nothing');
  await assert.rejects(uapiSet('wgc', ['a=1\nb=2'], socketDir), TypeError);
  await assert.rejects(uapiGet('none', socketDir), /cannot talk to/);
});

test('the CLI: usage errors exit 2 and runtime errors exit 1, one line each, never a stack trace', (t) => {
  const run = (...args: string[]): { status: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, WG_TS_PORT: '' } });
    return { status: r.status, stderr: r.stderr };
  };
  const bad = run('up', '--port', '70000');
  assert.deepEqual(bad, { status: 2, stderr: 'wireguard-ts: --port: 70000 is not a port number (1-65535)\n' });
  const dir = tmp(t);
  const none = run('list-clients', '--state-dir', dir);
  assert.deepEqual(none, { status: 1, stderr: `wireguard-ts: there is no server wg0 in ${dir}: run \`wireguard-ts up\` first\n` });
  const help = spawnSync(process.execPath, [BIN, 'help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /add-client NAME/);
});
