// The Prometheus text exposition format (version 0.0.4), written directly rather than through
// prom-client: prom-client keeps every series as an object in its registry and renders a scrape
// as one string in one synchronous call, so a million peers would mean three million series
// objects and seconds of main thread stalled per scrape. The format needs little: families of
// samples, each family introduced by HELP and TYPE and kept in one group, label values escaped.
// Text goes into 64 KiB chunks (the UAPI's ChunkWriter) that the server streams out as they fill.
import { ChunkWriter } from '../uapi/text.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge';

/** A label value as the format quotes it: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text escapes backslash and line feed (a double quote stays as it is). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** A sample value: integers in full, and the format's spellings of the non-finite values. */
export function formatValue(v: number | bigint): string {
  if (typeof v === 'bigint') return v.toString();
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  // Counters past 2^53 lose precision in a double anyway; exponent notation is valid there.
  return String(v);
}

/** `name="value",...` of already valid label names, values escaped; no braces. */
export function labelPairs(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',');
}

/** Longest piece ChunkWriter.line() makes room for (its MAX_GET_LINE). */
const PIECE = 128;
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const EQUALS = 61;

/**
 * Exposition text into chunks. ASCII only: every name, label and value we write is ASCII
 * (interface names are printable ASCII, keys base64, addresses digits and hex).
 */
export class ExpositionWriter {
  private readonly w: ChunkWriter;

  constructor(emit: (chunk: Uint8Array) => void) {
    this.w = new ChunkWriter(emit);
  }

  /** HELP and TYPE lines that open a family; its samples must follow before any other family. */
  family(name: string, type: MetricType, help: string): void {
    this.text(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`);
  }

  /** One sample; `labels` is the text between the braces ('' for none), already escaped. */
  sample(name: string, labels: string, value: number | bigint): void {
    this.text(labels === '' ? `${name} ${formatValue(value)}\n` : `${name}{${labels}} ${formatValue(value)}\n`);
  }

  /** Raw ASCII of any length (ChunkWriter guarantees room for PIECE bytes at a time). */
  text(s: string): void {
    for (let i = 0; i < s.length; i += PIECE) {
      this.w.line();
      this.w.ascii(i === 0 && s.length <= PIECE ? s : s.slice(i, i + PIECE));
    }
  }

  /**
   * Standard base64 with padding, as `wg` shows keys, straight into the chunk: a scrape of a
   * million peers would otherwise make three million short-lived strings and Buffers.
   */
  base64(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i += 3) {
      this.w.line();
      const n = bytes.length - i;
      const v = (bytes[i]! << 16) | ((n > 1 ? bytes[i + 1]! : 0) << 8) | (n > 2 ? bytes[i + 2]! : 0);
      this.w.byte(B64.charCodeAt(v >> 18));
      this.w.byte(B64.charCodeAt((v >> 12) & 63));
      this.w.byte(n > 1 ? B64.charCodeAt((v >> 6) & 63) : EQUALS);
      this.w.byte(n > 2 ? B64.charCodeAt(v & 63) : EQUALS);
    }
  }

  /** An address prefix as `wg` shows it ("10.0.0.0/8", "fd00::/64"). */
  prefix(addr: Uint8Array, cidr: number): void {
    this.w.line();
    this.w.prefix(addr, cidr);
  }

  /** Hands on what is buffered (the end of a response). */
  flush(): void {
    this.w.flush();
  }
}
