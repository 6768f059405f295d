// WireGuard's protocol constants (seconds unless the name says otherwise), as in REFERENCE.md.
// Their own file so the data-plane workers can import the limits they enforce without loading
// Noise or the timer state machine.
import { REJECT_AFTER_MESSAGES } from '../replay/replay.js';

export { REJECT_AFTER_MESSAGES };
export const REKEY_AFTER_MESSAGES = 2 ** 60;
export const REKEY_AFTER_TIME = 120;
export const REJECT_AFTER_TIME = 180;
export const REKEY_ATTEMPT_TIME = 90;
export const REKEY_TIMEOUT = 5;
/** Upper bound (exclusive) of the jitter added to handshake timers: HZ / 3 jiffies. */
export const REKEY_TIMEOUT_JITTER_MAX_MS = 333;
export const KEEPALIVE_TIMEOUT = 10;
export const COOKIE_REFRESH_TIME = 120;
/** At most one initiation per peer this often (50 per second); enforced by noise.ts. */
export const HANDSHAKE_INITIATION_RATE_MS = 20;
/**
 * 90 / 5 = 18. timers.c gives up when a retransmission falls due with more retries than this
 * already made: 19 retries, 20 initiations in all.
 */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Keys are zeroed this long after the last session was derived. */
export const ZERO_KEY_MATERIAL_TIME = REJECT_AFTER_TIME * 3;
/** Packets kept per peer while it has no session (wireguard-go's MaxStagedPackets). */
export const MAX_STAGED_PACKETS = 128;
