import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Segmenter, Coalescer, completeChecksum, sum16, fold, readVnetHeader, VNET_HDR_LEN, GSO_TCPV4, GSO_TCPV6,
  GSO_NONE, VNET_F_NEEDS_CSUM, VNET_F_DATA_VALID, type VnetHeader,
} from '../src/tun/offload.js';
import { seededRandom } from './helpers.js';

const rnd = seededRandom(7);

/** A TCP packet with a 12-byte timestamp option, checksum left as the kernel leaves it for TSO. */
function tcpPacket(v6: boolean, payload: Uint8Array, seq: number, flags: number, opts: { sport?: number; ack?: number } = {}): Uint8Array {
  const ipLen = v6 ? 40 : 20;
  const tcpLen = 32;
  const p = new Uint8Array(ipLen + tcpLen + payload.length);
  const v = new DataView(p.buffer);
  if (v6) {
    p[0] = 0x60;
    v.setUint16(4, tcpLen + payload.length);
    p[6] = 6;
    p[7] = 64;
    p.set([0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
    p.set([0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  } else {
    p[0] = 0x45;
    v.setUint16(2, p.length);
    v.setUint16(4, 0x1234);
    v.setUint16(6, 0x4000); // DF
    p[8] = 64;
    p[9] = 6;
    p.set([10, 200, 0, 1, 10, 200, 0, 2], 12);
    v.setUint16(10, ~fold(sum16(p, 0, 20)) & 0xffff);
  }
  const t = ipLen;
  v.setUint16(t, opts.sport ?? 40000);
  v.setUint16(t + 2, 5201);
  v.setUint32(t + 4, seq);
  v.setUint32(t + 8, opts.ack ?? 777);
  p[t + 12] = (tcpLen / 4) << 4;
  p[t + 13] = flags;
  v.setUint16(t + 14, 502);
  p.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], t + 20);
  p.set(payload, ipLen + tcpLen);
  return p;
}

/** An independent check: the TCP checksum of a full packet verifies (sum over pseudo + segment is 0xffff). */
function tcpChecksumOk(p: Uint8Array, at = 0, len = p.length - at): boolean {
  const v6 = p[at]! >> 4 === 6;
  const ipLen = v6 ? 40 : 20;
  const l4 = len - ipLen;
  const pseudo = v6 ? sum16(p, at + 8, at + 40) : sum16(p, at + 12, at + 20);
  return fold(sum16(p, at + ipLen, at + len, pseudo + 6 + l4)) === 0xffff;
}

const payload = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => (rnd() * 256) | 0);

for (const v6 of [false, true]) {
  test(`TSO: a ${v6 ? 'v6' : 'v4'} super-packet is cut into MSS segments with valid checksums`, () => {
    const data = payload(10_000);
    const superPkt = tcpPacket(v6, data, 0xfffff000, 0x18 /* ACK|PSH */);
    const mss = 1368;
    const seg = new Segmenter();
    assert.ok(seg.begin(superPkt, 0, superPkt.length, v6 ? GSO_TCPV6 : GSO_TCPV4, mss));
    const out = new Uint8Array(16 * 2048);
    const offsets = Uint32Array.from({ length: 16 }, (_, i) => i * 2048 + 32);
    const lens = new Int32Array(16);
    // Emit in two calls to exercise the cursor.
    let n = seg.emit(out, offsets, lens, 0, 3);
    n += seg.emit(out, offsets, lens, n, 16 - n);
    assert.equal(n, Math.ceil(10_000 / mss));
    assert.equal(seg.pending, false);
    const ipLen = v6 ? 40 : 20;
    const joined: number[] = [];
    for (let k = 0; k < n; k++) {
      const at = offsets[k]!;
      const seg1 = out.subarray(at, at + lens[k]!);
      assert.ok(tcpChecksumOk(seg1), `segment ${k} TCP checksum`);
      if (!v6) assert.equal(fold(sum16(seg1, 0, 20)), 0xffff, `segment ${k} IP checksum`);
      const dv = new DataView(seg1.buffer, seg1.byteOffset, seg1.byteLength);
      assert.equal(v6 ? dv.getUint16(4) + 40 : dv.getUint16(2), seg1.length);
      assert.equal(dv.getUint32(ipLen + 4), (0xfffff000 + k * mss) >>> 0, 'sequence numbers wrap correctly');
      assert.equal(seg1[ipLen + 13], k === n - 1 ? 0x18 : 0x10, 'PSH only on the last segment');
      joined.push(...seg1.subarray(ipLen + 32));
    }
    assert.deepEqual(Uint8Array.from(joined), data);
  });

  test(`GRO: ${v6 ? 'v6' : 'v4'} segments merge back into one super-packet the kernel accepts`, () => {
    const mss = 1368;
    const data = payload(mss * 5 + 100);
    const segs: Uint8Array[] = [];
    for (let off = 0; off < data.length; off += mss) {
      const last = off + mss >= data.length;
      segs.push(tcpPacket(v6, data.subarray(off, Math.min(off + mss, data.length)), 1000 + off, last ? 0x18 : 0x10));
    }
    // Segments sit in slots with room before them, as decrypted packets do.
    const slots = new Uint8Array(segs.length * 2048);
    const at = segs.map((s, i) => {
      slots.set(s, i * 2048 + 16);
      return i * 2048 + 16;
    });
    const area = new Uint8Array(70_000);
    const c = new Coalescer();
    c.start(slots, at[0]!, segs[0]!.length, area, 16);
    for (let i = 1; i < segs.length; i++) assert.ok(c.add(slots, at[i]!, segs[i]!.length), `segment ${i} joins`);
    assert.equal(c.size, segs.length);
    const len = c.finish();
    assert.equal(c.writeBuf, area);
    const h: VnetHeader = { flags: 0, gsoType: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
    readVnetHeader(area, c.writeAt, h);
    assert.deepEqual(h, { flags: VNET_F_NEEDS_CSUM, gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4, gsoSize: mss, csumStart: v6 ? 40 : 20, csumOffset: 16 });
    const pkt = c.writeAt + VNET_HDR_LEN;
    const total = len - VNET_HDR_LEN;
    const ipLen = v6 ? 40 : 20;
    assert.deepEqual(area.subarray(pkt + ipLen + 32, pkt + total), data);
    assert.equal(area[pkt + ipLen + 13], 0x18, 'the push of the last segment is kept');
    // Completing the partial checksum, as the kernel would, gives a valid packet.
    assert.ok(completeChecksum(area, pkt, total, h.csumStart, h.csumOffset));
    assert.ok(tcpChecksumOk(area, pkt, total));
    if (!v6) assert.equal(fold(sum16(area, pkt, pkt + 20)), 0xffff);
  });
}

test('GRO: a lone segment is written in place with a data-valid header', () => {
  const s = tcpPacket(false, payload(100), 1, 0x10);
  const slot = new Uint8Array(2048);
  slot.set(s, 16);
  const c = new Coalescer();
  c.start(slot, 16, s.length, new Uint8Array(70_000), 16);
  const len = c.finish();
  assert.equal(c.writeBuf, slot);
  assert.equal(c.writeAt, 6);
  assert.equal(len, s.length + VNET_HDR_LEN);
  assert.equal(slot[6], VNET_F_DATA_VALID);
  assert.equal(slot[7], GSO_NONE);
  assert.deepEqual(slot.subarray(16, 16 + s.length), s);
});

test('GRO refuses what Linux GRO refuses', () => {
  const base = tcpPacket(false, payload(1000), 5000, 0x10);
  const cases: [string, Uint8Array, boolean][] = [
    ['contiguous', tcpPacket(false, payload(1000), 6000, 0x10), true],
    ['a gap in sequence', tcpPacket(false, payload(1000), 6001, 0x10), false],
    ['another flow', tcpPacket(false, payload(1000), 6000, 0x10, { sport: 40001 }), false],
    ['another ack', tcpPacket(false, payload(1000), 6000, 0x10, { ack: 778 }), false],
    ['a FIN', tcpPacket(false, payload(1000), 6000, 0x11), false],
    ['a bigger segment', tcpPacket(false, payload(1001), 6000, 0x10), false],
  ];
  for (const [what, next, joins] of cases) {
    const c = new Coalescer();
    c.start(base, 0, base.length, new Uint8Array(70_000), 16);
    assert.equal(c.add(next, 0, next.length), joins, what);
  }
  assert.equal(Coalescer.mergeable(base, 0, base.length), 1000);
  const syn = tcpPacket(false, payload(10), 1, 0x02);
  assert.equal(Coalescer.mergeable(syn, 0, syn.length), -1);
  const frag = tcpPacket(false, payload(10), 1, 0x10);
  frag[6] = 0x20; // MF
  assert.equal(Coalescer.mergeable(frag, 0, frag.length), -1);
  const udp = tcpPacket(false, payload(10), 1, 0x10);
  udp[9] = 17;
  assert.equal(Coalescer.mergeable(udp, 0, udp.length), -1);
});

test('completeChecksum finishes a partial UDP checksum', () => {
  const p = new Uint8Array(20 + 8 + 33);
  p[0] = 0x45;
  p[9] = 17;
  p.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
  new DataView(p.buffer).setUint16(2, p.length);
  p.set(payload(33), 28);
  new DataView(p.buffer).setUint16(24, 8 + 33);
  const pseudo = fold(sum16(p, 12, 20) + 17 + 41);
  new DataView(p.buffer).setUint16(26, pseudo);
  assert.ok(completeChecksum(p, 0, p.length, 20, 6));
  assert.equal(fold(sum16(p, 20, p.length, sum16(p, 12, 20) + 17 + 41)), 0xffff);
  assert.equal(completeChecksum(p, 0, 10, 20, 6), false, 'a checksum field past the end is refused');
});
