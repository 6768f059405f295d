// Small helpers shared by the tests.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Noise } from '../src/handshake/noise.js';
import { generateKeyPair } from '../src/crypto/x25519.js';

export const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A Noise with a fresh static key pair (its own `privateKey` and `publicKey`). */
export function identity(): { noise: Noise; priv: Uint8Array; pub: Uint8Array } {
  const priv = new Uint8Array(32);
  generateKeyPair(priv, new Uint8Array(32));
  const noise = new Noise();
  noise.setPrivateKey(priv);
  return { noise, priv: noise.privateKey, pub: noise.publicKey };
}

/** Loads a JSON vector file from test/vectors (the .ts source tree, not dist). */
export function vectors<T>(name: string): T {
  const here = dirname(fileURLToPath(import.meta.url));
  return JSON.parse(readFileSync(join(here, '..', '..', 'test', 'vectors', name), 'utf8')) as T;
}

/** A deterministic PRNG (mulberry32) for seeded random tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
