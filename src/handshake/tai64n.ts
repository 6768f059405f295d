// TAI64N timestamps for handshake initiations: 8 bytes of seconds (2^62 + Unix seconds, which is
// how WireGuard and wireguard-go label TAI here) and 4 bytes of nanoseconds, big-endian, so
// that byte order is time order. The nanoseconds are rounded down to 2^24 ns (~16.8 ms), as
// wireguard-go does, so the timestamp does not leak a fine-grained clock.
import { TIMESTAMP_LEN } from './messages.js';

const TAI_BASE_HI = 0x40000000; // 2^62 as the high 32 bits of the 64-bit seconds field
const WHITENER_MASK = 0x1000000 - 1;

/** Writes the timestamp of `unixMs` (milliseconds since the epoch) into `out`. */
export function writeTai64n(out: Uint8Array, unixMs: number): void {
  const secs = Math.floor(unixMs / 1000);
  const nanos = ((unixMs - secs * 1000) * 1e6) & ~WHITENER_MASK;
  const view = new DataView(out.buffer, out.byteOffset, TIMESTAMP_LEN);
  view.setUint32(0, TAI_BASE_HI + Math.floor(secs / 2 ** 32), false);
  view.setUint32(4, secs >>> 0, false);
  view.setUint32(8, nanos >>> 0, false);
}

/** True when timestamp `a` is strictly later than `b`. */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_LEN; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}
