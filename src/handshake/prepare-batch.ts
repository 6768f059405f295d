// The layout of a batch of initiations that the main thread and a prepare-worker pass back and
// forth (offload.ts): one ArrayBuffer of status bytes, prepared outputs, then the messages.
import { PREPARED_BYTES, type Rejection } from './noise.js';
import { INIT_LEN } from './messages.js';

/** Initiations per task: one piscina round trip (~8–50 µs) against ~120 µs of DH each. */
export const BATCH_MAX = 32;
/** Int32 index of the key generation word, and byte offset of the key, in the key buffer. */
export const KEY_GEN = 0;
export const KEY_OFFSET = 8;
export const PREPARE_STATUS = 0;
export const PREPARE_OUT = BATCH_MAX;
export const PREPARE_MSGS = PREPARE_OUT + BATCH_MAX * PREPARED_BYTES;
export const BATCH_BYTES = PREPARE_MSGS + BATCH_MAX * INIT_LEN;

/** Per-initiation status codes a task writes: 0 is prepared. */
export const PREPARE_REJECTIONS: readonly (Rejection | undefined)[] = [undefined, 'state', 'dh', 'decrypt', 'unknown-peer', 'replay', 'flood'];

export function messageAt(batch: Uint8Array, i: number): Uint8Array {
  return batch.subarray(PREPARE_MSGS + i * INIT_LEN, PREPARE_MSGS + (i + 1) * INIT_LEN);
}

export function preparedAt(batch: Uint8Array, i: number): Uint8Array {
  return batch.subarray(PREPARE_OUT + i * PREPARED_BYTES, PREPARE_OUT + (i + 1) * PREPARED_BYTES);
}

/** What goes to the pool; the pool answers with `buf`, moved back. */
export interface PrepareTask {
  /** Key generation the batch was queued under. */
  gen: number;
  count: number;
  keyWords: Int32Array;
  buf: ArrayBuffer;
}

