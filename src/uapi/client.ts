// The client side of the UAPI socket, what `wg` does in C: one request per connection, the
// reply read up to its "errno=N" line and the empty line after it. Used by the server mode
// (src/server) to configure a running daemon without depending on the `wg` tool.
import { createConnection } from 'node:net';
import { parseGetResponse } from './protocol.js';
import { isLive, socketPath } from './server.js';
import type { DeviceState, PeerState } from './types.js';

/** A daemon that takes longer than this to answer one request is treated as hung. */
const TIMEOUT_MS = 10_000;

/** The daemon answered with a non-zero errno (positive here, as the device reports it). */
export class UapiError extends Error {
  constructor(readonly errno: number, what: string) {
    super(`${what}: the daemon answered errno ${errno}`);
  }
}


/** Whether a daemon accepts connections on IFNAME's socket (a stale file or no file: false). */
export function uapiAlive(ifname: string, socketDir?: string): Promise<boolean> {
  return isLive(socketPath(ifname, socketDir));
}

/** Sends one request and returns the whole reply text, ending with "errno=N\n\n". */
function exchange(path: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let text = '';
    let settled = false;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.destroy();
      if (err) reject(err);
      else resolve(text);
    };
    const timer = setTimeout(() => finish(new Error(`no answer on ${path} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    c.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      // Only the tail can hold the end marker: the empty line comes nowhere else.
      if (/(^|\n)errno=-?\d+\n\n$/.test(text.slice(-32))) finish(undefined);
    });
    c.on('close', () => finish(new Error(`${path} closed the connection without a complete answer`)));
    c.on('error', (e: NodeJS.ErrnoException) => finish(new Error(`cannot talk to ${path}: ${e.code ?? e.message}`)));
    c.write(request);
  });
}

/**
 * `set=1` with `lines` ("key=value", no newline), applied as a whole by the daemon. Throws a
 * UapiError when the daemon refuses it.
 */
export async function uapiSet(ifname: string, lines: readonly string[], socketDir?: string): Promise<void> {
  for (const l of lines) {
    if (!/^[a-z_]+=[^\n]*$/.test(l)) throw new TypeError(`not a UAPI line: ${JSON.stringify(l.split('=')[0])}`);
  }
  const reply = await exchange(socketPath(ifname, socketDir), `set=1\n${lines.map((l) => l + '\n').join('')}\n`);
  const m = /^errno=(-?\d+)\n\n$/.exec(reply);
  if (m === null) throw new Error(`unexpected answer to set on ${ifname}`);
  const errno = Math.abs(Number(m[1]));
  if (errno !== 0) throw new UapiError(errno, `set on ${ifname}`);
}

/** `get=1`: the device's state and its peers. Throws a UapiError when the daemon refuses. */
export async function uapiGet(ifname: string, socketDir?: string): Promise<{ device: DeviceState; peers: PeerState[] }> {
  const reply = await exchange(socketPath(ifname, socketDir), 'get=1\n\n');
  const parsed = parseGetResponse(reply);
  if (parsed === null) throw new Error(`malformed answer to get on ${ifname}`);
  if (parsed.errno !== 0) throw new UapiError(Math.abs(parsed.errno), `get on ${ifname}`);
  return { device: parsed.device, peers: parsed.peers };
}
