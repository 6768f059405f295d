// The protocol core against the real thing: a plain UDP socket in this test speaks Noise IKpsk2
// and transport data with Debian's wireguard-go, in both roles, with and without a preshared
// key, and real ICMP echoes cross the tunnel. wireguard-go runs in this namespace (its UDP
// socket on loopback) with its TUN device moved into a namespace the test creates, so the
// tunnel addresses exist only there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { Noise, Handshake, SessionKeys } from '../../src/handshake/noise.js';
import { CookieChecker, CookieGenerator } from '../../src/handshake/cookie.js';
import { TransportCrypto } from '../../src/workers/transport.js';
import { generateKeyPair } from '../../src/crypto/x25519.js';
import { INIT_LEN, RESP_LEN, MSG_INITIATION, MSG_RESPONSE, MSG_DATA, messageType, readU32, DATA_HEADER_LEN } from '../../src/handshake/messages.js';
import { Cleanup, createNetns, ensureTools, isRoot, keyFile, sh, startWireguardGo, wgKeyPair, type WireguardGo } from './harness.js';
import { icmpEchoV4, parseIcmpV4 } from './packets.js';

const skip = isRoot ? false : 'needs root for network namespaces';
const cleanup = new Cleanup();
let wggo: WireguardGo;
let ns: string;
let wggoPublic: Uint8Array;
const WGGO_ADDR = '10.201.0.1';
const OUR_ADDR = '10.201.0.2';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

before(async () => {
  if (skip) return;
  ensureTools();
  ns = createNetns(cleanup);
  wggo = await startWireguardGo(cleanup);
  const keys = wgKeyPair();
  wggoPublic = Uint8Array.from(Buffer.from(keys.publicKey, 'base64'));
  sh('wg', ['set', wggo.ifname, 'private-key', keyFile(keys.privateKey), 'listen-port', '0']);
  sh('ip', ['link', 'set', wggo.ifname, 'netns', ns]);
  sh('ip', ['-n', ns, 'addr', 'add', `${WGGO_ADDR}/24`, 'dev', wggo.ifname]);
  sh('ip', ['-n', ns, 'link', 'set', wggo.ifname, 'up']);
});

after(() => cleanup.run());

/** Our side of the conversation: a UDP socket on loopback and one peer, wireguard-go. */
class Us {
  readonly noise = new Noise();
  readonly publicKey = new Uint8Array(32);
  readonly hs: Handshake;
  readonly cookies: CookieGenerator;
  readonly checker = new CookieChecker();
  readonly session = new SessionKeys();
  readonly transport = new TransportCrypto();
  readonly sock = dgram.createSocket('udp4');
  private readonly inbox: Buffer[] = [];
  private waiter: (() => void) | undefined;
  sendCounter = 0;

  constructor(readonly psk?: Uint8Array) {
    const priv = new Uint8Array(32);
    generateKeyPair(priv, this.publicKey);
    this.noise.setPrivateKey(priv);
    this.checker.setPublicKey(this.publicKey);
    this.hs = new Handshake(wggoPublic, 0);
    if (psk) this.hs.presharedKey.set(psk);
    assert.ok(this.noise.precompute(this.hs));
    this.cookies = new CookieGenerator(wggoPublic);
    this.sock.on('message', (m) => {
      this.inbox.push(m);
      this.waiter?.();
    });
  }

  async bind(): Promise<number> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', r));
    cleanup.add(() => void this.sock.close());
    return this.sock.address().port;
  }

  /** Registers us as a peer of wireguard-go. */
  configureOn(wg: WireguardGo, ourPort: number): void {
    const args = ['set', wg.ifname, 'peer', b64(this.publicKey), 'allowed-ips', `${OUR_ADDR}/32`, 'endpoint', `127.0.0.1:${ourPort}`];
    if (this.psk) args.push('preshared-key', keyFile(b64(this.psk)));
    sh('wg', args);
  }

  async receive(type: number, timeoutMs = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => messageType(m, 0, m.length) === type);
      if (i >= 0) return Uint8Array.from(this.inbox.splice(i, 1)[0]!);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message of type ${type} within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  send(msg: Uint8Array, port: number): Promise<void> {
    return new Promise((r, j) => this.sock.send(msg, port, '127.0.0.1', (e) => (e ? j(e) : r())));
  }

  seal(packet: Uint8Array): Uint8Array {
    const buf = new Uint8Array(DATA_HEADER_LEN + packet.length + 16 + 16);
    buf.set(packet, DATA_HEADER_LEN);
    const len = this.transport.seal(buf, 0, packet.length, 1420, this.session.remoteIndex, this.sendCounter++, 0, this.session.sendKey);
    return buf.subarray(0, len);
  }

  open(msg: Uint8Array): Uint8Array {
    assert.equal(readU32(msg, 4), this.session.localIndex, 'data addressed to our index');
    const n = this.transport.open(msg, 0, msg.length, this.session.receiveKey);
    assert.ok(n >= 0, 'transport data authenticates');
    return msg.subarray(DATA_HEADER_LEN, DATA_HEADER_LEN + n);
  }
}

function transfer(wg: WireguardGo, peer: Uint8Array): { rx: number; tx: number } {
  const line = wg.show('transfer').split('\n').find((l) => l.startsWith(b64(peer)));
  assert.ok(line, 'wireguard-go lists our peer');
  const [, rx, tx] = line.split('\t');
  return { rx: Number(rx), tx: Number(tx) };
}

async function weInitiate(psk?: Uint8Array): Promise<void> {
  const us = new Us(psk);
  const port = await us.bind();
  us.configureOn(wggo, port);
  const wgPort = wggo.listenPort();

  const init = new Uint8Array(INIT_LEN);
  assert.ok(us.noise.createInitiation(us.hs, 0x5eed0001, Date.now(), init));
  us.cookies.addMacs(init, INIT_LEN, performance.now());
  await us.send(init, wgPort);

  const resp = await us.receive(MSG_RESPONSE);
  assert.equal(resp.length, RESP_LEN);
  assert.ok(us.checker.checkMac1(resp, RESP_LEN), 'mac1 of the response');
  const r = us.noise.consumeResponse(resp, (i) => (i === 0x5eed0001 ? us.hs : undefined));
  assert.ok(r.ok, `response consumed: ${JSON.stringify(r)}`);
  assert.ok(us.noise.beginSession(us.hs, us.session));

  const payload = new TextEncoder().encode('wireguard-ts echo payload');
  await us.send(us.seal(icmpEchoV4(OUR_ADDR, WGGO_ADDR, 0x4242, 1, payload)), wgPort);
  const reply = parseIcmpV4(us.open(await us.receive(MSG_DATA)));
  assert.ok(reply, 'an ICMP packet came back');
  assert.deepEqual(
    { src: reply.src, dst: reply.dst, type: reply.type, id: reply.id, seq: reply.seq },
    { src: WGGO_ADDR, dst: OUR_ADDR, type: 0, id: 0x4242, seq: 1 },
  );
  assert.deepEqual(reply.payload, payload);
  const t = transfer(wggo, us.publicKey);
  assert.ok(t.rx > 0 && t.tx > 0, `wg show transfer counts the bytes: ${JSON.stringify(t)}`);
  sh('wg', ['set', wggo.ifname, 'peer', b64(us.publicKey), 'remove']);
}

async function theyInitiate(psk?: Uint8Array): Promise<void> {
  const us = new Us(psk);
  const port = await us.bind();
  us.configureOn(wggo, port);
  const ping = spawn('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '5', '-s', '56', OUR_ADDR], { stdio: 'ignore' });
  const pingDone = new Promise<number>((r) => ping.on('exit', (code) => r(code ?? -1)));
  cleanup.add(() => void ping.kill());

  const init = await us.receive(MSG_INITIATION);
  assert.ok(us.checker.checkMac1(init, INIT_LEN), 'mac1 of the initiation');
  const r = us.noise.consumeInitiation(init, performance.now(), (pk) => (Buffer.compare(pk, wggoPublic) === 0 ? us.hs : undefined));
  assert.ok(r.ok, `initiation consumed: ${JSON.stringify(r)}`);
  const resp = new Uint8Array(RESP_LEN);
  assert.ok(us.noise.createResponse(us.hs, 0x5eed0002, resp));
  us.cookies.addMacs(resp, RESP_LEN, performance.now());
  await us.send(resp, wggo.listenPort());
  assert.ok(us.noise.beginSession(us.hs, us.session));

  const request = parseIcmpV4(us.open(await us.receive(MSG_DATA)));
  assert.ok(request, 'the first data packet is the ping');
  assert.deepEqual({ src: request.src, dst: request.dst, type: request.type }, { src: WGGO_ADDR, dst: OUR_ADDR, type: 8 });
  // Answer it: the responder may send once the initiator's first data packet confirmed the keys.
  await us.send(us.seal(echoReply(request)), wggo.listenPort());
  assert.equal(await pingDone, 0, 'ping inside the namespace got our reply');
  const t = transfer(wggo, us.publicKey);
  assert.ok(t.rx > 0 && t.tx > 0, `wg show transfer counts the bytes: ${JSON.stringify(t)}`);
  sh('wg', ['set', wggo.ifname, 'peer', b64(us.publicKey), 'remove']);
}

function echoReply(req: NonNullable<ReturnType<typeof parseIcmpV4>>): Uint8Array {
  const p = icmpEchoV4(req.dst, req.src, req.id, req.seq, req.payload);
  p[20] = 0; // echo reply: fix the ICMP checksum for the changed type (8 -> 0)
  const v = new DataView(p.buffer);
  let sum = v.getUint16(22) + 0x0800;
  sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(22, sum);
  return p;
}

const psk = (): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);

test('we initiate to wireguard-go and exchange an ICMP echo', { skip, timeout: 20_000 }, () => weInitiate());
test('we initiate to wireguard-go with a preshared key', { skip, timeout: 20_000 }, () => weInitiate(psk()));
test('wireguard-go initiates to us and its ping gets our reply', { skip, timeout: 20_000 }, () => theyInitiate());
test('wireguard-go initiates to us with a preshared key', { skip, timeout: 20_000 }, () => theyInitiate(psk()));
