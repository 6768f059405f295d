// The sending side of WireGuard's macs for all of one engine's clients (what cookie.ts's
// CookieGenerator is for one peer): mac1 of every initiation, keyed by the server's public key
// and so one key for every client, and mac2 with the cookie a client holds from the server's
// last cookie reply to it. Cookies live in one table indexed by the engine's client number.
//
// Why not a CookieGenerator per client: its addMacs makes seven typed-array views per call,
// and it runs once per initiation. Here the keys and the per-client cookies sit in tables, the
// message's views come with its Initiation (initiation.ts), and adding the macs allocates
// nothing. A cookie reply is opened with the mac1 of the initiation it answers, which is still
// in that initiation's bytes, so no "last mac1" needs keeping.
import { hash, mac, HASH_LEN } from '../crypto/blake2s.js';
import { xopen } from '../crypto/aead.js';
import { zero } from '../crypto/memory.js';
import { COOKIE_REFRESH_TIME_MS } from '../handshake/cookie.js';
import { COOKIE_LEN, COOKIE_NONCE, COOKIE_NONCE_LEN, COOKIE_ENCRYPTED, COOKIE_REPLY_LEN } from '../handshake/messages.js';
import type { Initiation } from './initiation.js';

const LABEL_MAC1 = new TextEncoder().encode('mac1----');
const LABEL_COOKIE = new TextEncoder().encode('cookie--');

export class ClientMacs {
  private readonly mac1Key = new Uint8Array(HASH_LEN);
  private readonly cookieKey = new Uint8Array(HASH_LEN);
  private readonly cookies: Uint8Array;
  /** When each client's cookie arrived (performance.now() ms); -Infinity: none. */
  private readonly cookieMs: Float64Array;
  /** The cookie being used, copied out of the table: mac() takes a key of its own length. */
  private readonly sCookie = new Uint8Array(COOKIE_LEN);

  constructor(serverKey: Uint8Array, clients: number) {
    hash(this.mac1Key, LABEL_MAC1, serverKey);
    hash(this.cookieKey, LABEL_COOKIE, serverKey);
    this.cookies = new Uint8Array(clients * COOKIE_LEN);
    this.cookieMs = new Float64Array(clients).fill(-Infinity);
  }

  /** True while client `client` holds a cookie young enough to send mac2 with. */
  hasCookie(client: number, nowMs: number): boolean {
    return nowMs - this.cookieMs[client]! <= COOKIE_REFRESH_TIME_MS;
  }

  /** Writes mac1, and mac2 when the client holds a fresh cookie (else zeros), into `init`. */
  add(init: Initiation, client: number, nowMs: number): void {
    mac(init.mac1, this.mac1Key, init.mac1Input);
    if (!this.hasCookie(client, nowMs)) {
      init.mac2.fill(0);
      return;
    }
    const c = this.cookies;
    const at = client * COOKIE_LEN;
    for (let i = 0; i < COOKIE_LEN; i++) this.sCookie[i] = c[at + i]!;
    mac(init.mac2, this.sCookie, init.mac2Input);
    this.sCookie.fill(0);
  }

  /**
   * Takes the cookie out of `reply`, a cookie reply to `answered` (an initiation of client
   * `client`, its mac1 unchanged since it was sent); false if it does not decrypt.
   */
  consumeReply(reply: Uint8Array, answered: Initiation, client: number, nowMs: number): boolean {
    const nonce = reply.subarray(COOKIE_NONCE, COOKIE_NONCE + COOKIE_NONCE_LEN);
    const sealed = reply.subarray(COOKIE_ENCRYPTED, COOKIE_REPLY_LEN);
    if (!xopen(this.sCookie, sealed, answered.mac1, nonce, this.cookieKey)) return false;
    this.cookies.set(this.sCookie, client * COOKIE_LEN);
    this.sCookie.fill(0);
    this.cookieMs[client] = nowMs;
    return true;
  }

  destroy(): void {
    zero(this.cookies);
    this.cookieMs.fill(-Infinity);
  }
}
