// The subset of sodium-native's raw binding that wireguard-ts calls. The binding returns status
// codes instead of throwing (index.js wraps it with asserts and throws), which is what the data
// plane needs: a forged packet is a counted drop, not an exception.
declare module 'sodium-native/binding.js' {
  type Bytes = Uint8Array;
  const binding: {
    crypto_aead_chacha20poly1305_ietf_encrypt(c: Bytes, m: Bytes, ad: Bytes | undefined, npub: Bytes, k: Bytes): number;
    crypto_aead_chacha20poly1305_ietf_decrypt(m: Bytes, c: Bytes, ad: Bytes | undefined, npub: Bytes, k: Bytes): number;
    crypto_aead_xchacha20poly1305_ietf_encrypt(c: Bytes, m: Bytes, ad: Bytes | undefined, npub: Bytes, k: Bytes): number;
    crypto_aead_xchacha20poly1305_ietf_decrypt(m: Bytes, c: Bytes, ad: Bytes | undefined, npub: Bytes, k: Bytes): number;
    crypto_scalarmult(q: Bytes, n: Bytes, p: Bytes): number;
    crypto_scalarmult_base(q: Bytes, n: Bytes): number;
    sodium_memzero(buf: Bytes): void;
    sodium_memcmp(a: Bytes, b: Bytes): boolean;
    randombytes_buf(buf: ArrayBufferLike, offset: number, length: number): void;
  };
  export default binding;
}
