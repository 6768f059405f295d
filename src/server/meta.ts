// Keys of the store's meta table that the CLI and the daemon share, and the one hash used for
// every secret that is checked but never kept (API tokens, sessions, the setup link).
import { createHash } from 'node:crypto';

/** The last change-feed sequence the daemon has applied to its device (the CLI waits on it). */
export const APPLIED_META = 'applied_seq';

/**
 * A meta key of one node: in a cluster the meta table is shared, while what the applied
 * sequence and the NAT state describe belongs to each node's own device and host.
 */
export const nodeKey = (key: string, node: string | undefined): string => (node === undefined ? key : `${key}@${node}`);
/** What `up --nat` did, for `down` to undo (JSON NatState). */
export const NAT_META = 'nat';
/** The one-time setup link's hash and expiry (JSON). */
export const SETUP_META = 'setup_token';
export const SETUP_TTL_MS = 3_600_000;

/**
 * SHA-256, hex. Enough for random 192-256-bit secrets (nothing to brute-force, unlike a
 * password, which gets argon2id): a copy of the store gives no usable token or session.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
