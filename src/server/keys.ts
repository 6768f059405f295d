// Keys of the server mode in the base64 form of `wg genkey` / `wg pubkey` / `wg genpsk`, the
// form wg-quick files and the WireGuard apps take.
import { KEY_LEN, generateKeyPair, publicKeyOf } from '../crypto/x25519.js';
import { randomFill, zero } from '../crypto/memory.js';

export function isBase64Key(s: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(s);
}

export function keyBytes(b64: string): Uint8Array {
  if (!isBase64Key(b64)) throw new TypeError('not a base64 WireGuard key');
  return Uint8Array.from(Buffer.from(b64, 'base64'));
}

/** A key as WireGuard's tools write it: standard base64 with padding. */
export const keyBase64 = (k: Uint8Array): string => Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('base64');

export function newKeyPair(): { privateKey: string; publicKey: string } {
  const priv = new Uint8Array(KEY_LEN);
  const pub = new Uint8Array(KEY_LEN);
  generateKeyPair(priv, pub);
  const pair = { privateKey: keyBase64(priv), publicKey: keyBase64(pub) };
  zero(priv);
  return pair;
}

export function newPresharedKey(): string {
  const k = new Uint8Array(KEY_LEN);
  randomFill(k);
  const s = keyBase64(k);
  zero(k);
  return s;
}

export function publicKeyFromPrivate(privateKey: string): string {
  const priv = keyBytes(privateKey);
  const pub = new Uint8Array(KEY_LEN);
  publicKeyOf(pub, priv);
  zero(priv);
  return keyBase64(pub);
}

/** Hex, as UAPI carries keys. */
export function keyHex(b64key: string): string {
  return Buffer.from(keyBytes(b64key)).toString('hex');
}
