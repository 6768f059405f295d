// The layout of a batch of initiations that the main thread and a prepare-worker pass back and
// forth (offload.ts): one ArrayBuffer of status bytes, prepared outputs, then the messages.
import { PREPARED_BYTES, type Rejection } from './noise.js';
import { INIT_LEN } from './messages.js';

/** Initiations per task: one piscina round trip (~8–50 µs) against ~120 µs of DH each. */
export const BATCH_MAX = 32;
/**
 * The key buffer (a SharedArrayBuffer every pool thread gets at start-up): Int32 word KEY_GEN
 * counts key changes; word KEY_ACK holds the low 16 bits of a generation above a count of the
 * threads that have loaded that generation (ackWord); the key itself is at byte KEY_OFFSET.
 */
export const KEY_GEN = 0;
export const KEY_ACK = 1;
export const KEY_OFFSET = 8;
export const KEY_BUFFER_BYTES = KEY_OFFSET + 32;

/** The KEY_ACK word that opens generation `gen` with no thread counted yet. */
export function ackWord(gen: number): number {
  return (gen & 0xffff) << 16;
}

/** Threads counted in `word` for generation `gen`, or -1 when the word is about another one. */
export function ackCount(word: number, gen: number): number {
  return word >>> 16 === (gen & 0xffff) ? word & 0xffff : -1;
}
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
  buf: ArrayBuffer;
}

/** What every pool thread is given at start-up (piscina workerData). */
export interface PrepareWorkerData {
  keyWords: Int32Array;
}

/**
 * For tests only (README): WGTS_TEST_FAULT=pool-throw makes every batch fail in the pool thread,
 * pool-hang makes it block for ever, so the fallback to the main thread can be exercised.
 */
export const TEST_FAULT_ENV = 'WGTS_TEST_FAULT';
