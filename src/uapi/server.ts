// The UAPI unix socket: /var/run/wireguard/IFNAME.sock, where `wg` finds a userspace
// interface. Each connection runs a UapiSession (protocol.ts); this file only carries bytes,
// owns the socket file, and notices when that file is deleted (which, by convention, tells
// the daemon to exit).
//
// Socket file life cycle, as wireguard-go's ipc/uapi_unix.go: the directory is created 0755;
// the socket is bound under umask 077 (then chmod 0600), so there is no moment where another
// user could connect; an existing file that refuses connections is a stale socket of a dead
// daemon and is replaced; one that accepts is a live daemon, and we refuse to start.
import { chmodSync, lstatSync, mkdirSync, unlinkSync, watch, type FSWatcher } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorFields } from '../log.js';
import { interfaceIndex } from '../tun/tun.js';
import { UapiSession, type UapiSessionOptions } from './protocol.js';
import type { UapiDevice } from './types.js';

export const DEFAULT_SOCKET_DIR = '/var/run/wireguard';

/** How often the socket file is checked when no inotify event came (a watch can be missed). */
const POLL_MS = 1000;
/** sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH = 107;
/** Replies queued for a client past which we stop reading its requests until it drains. */
const WRITE_HIGH_WATER = 1 << 20;

export interface UapiServerOptions extends Omit<UapiSessionOptions, 'resolveZone' | 'onTooLarge'> {
  /** Directory of the socket (tests); default /var/run/wireguard. */
  socketDir?: string;
  /** Where refused requests and socket errors are told. */
  logger?: Logger;
}

export interface UapiServer {
  readonly path: string;
  /** Stops serving, closes every connection and removes the socket file (if still ours). */
  close(): Promise<void>;
  /** Called once when the socket file is deleted or replaced: the daemon should exit. */
  onSocketDeleted(cb: () => void): void;
}

/** Starts serving `device` on IFNAME's UAPI socket. Main thread only (it sets the umask). */
export async function startUapiServer(ifname: string, device: UapiDevice, opts: UapiServerOptions = {}): Promise<UapiServer> {
  if (!/^[^/\0]{1,255}$/.test(ifname) || ifname === '.' || ifname === '..') {
    throw new Error(`invalid interface name ${JSON.stringify(ifname)}`);
  }
  const dir = opts.socketDir ?? DEFAULT_SOCKET_DIR;
  const path = socketPath(ifname, dir);
  // libuv would silently bind a truncated path.
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new Error(`socket path too long: ${path}`);
  if (mkdirSync(dir, { recursive: true, mode: 0o755 }) !== undefined) chmodSync(dir, 0o755);

  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => serve(socket, device, opts, sockets));
  let err = await listen(server, path);
  if (err === 'EADDRINUSE') {
    if (await isLive(path)) throw new Error(`interface ${ifname} is already served by another process (${path})`);
    unlinkSync(path);
    err = await listen(server, path);
  }
  if (err !== undefined) throw new Error(`cannot listen on ${path}: ${err}`);
  // After listening, an error (accept failing with EMFILE...) concerns one connection that could
  // not be taken, and would end the process without a listener; the server keeps listening.
  server.on('error', (e) => opts.logger?.error({ err: errorFields(e) }, 'UAPI socket error'));
  let ino: number;
  let dev: number;
  try {
    chmodSync(path, 0o600);
    ({ ino, dev } = lstatSync(path));
  } catch (e) {
    server.close();
    throw e;
  }
  const ours = (): boolean => {
    try {
      const st = lstatSync(path);
      return st.ino === ino && st.dev === dev;
    } catch {
      return false;
    }
  };
  const watcher = new DeletionWatcher(path, ours);
  let closed = false;

  return {
    path,
    onSocketDeleted: (cb) => watcher.add(cb),
    close: async () => {
      if (closed) return;
      closed = true;
      watcher.stop();
      if (ours()) unlinkSync(path);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Binds under umask 077: bind(2) happens synchronously inside listen(), so the window is closed. */
function listen(server: Server, path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      resolve(err.code ?? err.message);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve(undefined);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    const old = process.umask(0o077);
    try {
      server.listen(path);
    } finally {
      process.umask(old);
    }
  });
}

export function socketPath(ifname: string, socketDir = DEFAULT_SOCKET_DIR): string {
  return join(socketDir, `${ifname}.sock`);
}

/** Whether a daemon answers on `path` (a stale socket or any other file refuses). */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function serve(socket: Socket, device: UapiDevice, opts: UapiServerOptions, sockets: Set<Socket>): void {
  sockets.add(socket);
  // Like wireguard-go, a refused connection is closed outright once its reply is out.
  const close = (): void => {
    if (!socket.writableEnded) socket.end(() => socket.destroy());
  };
  const writable = (): boolean => socket.writableLength <= WRITE_HIGH_WATER;
  const session = new UapiSession(device, (chunk) => void socket.write(chunk), {
    ...opts,
    // if_nametoindex answers 0 for a name it does not know.
    resolveZone: (name) => interfaceIndex(name) || undefined,
    onTooLarge: (limit) => opts.logger?.error({ limit }, 'UAPI set refused: larger than the limit, nothing applied'),
    onClose: close,
    writable,
    whenWritable: (resume) => socket.once('drain', resume),
    onIdle: () => {
      if (writable()) socket.resume();
    },
  });
  socket.on('data', (chunk: Buffer) => {
    if (!session.feed(chunk)) {
      close();
      return;
    }
    // One chunk per event-loop turn: from a fast sender libuv reads what the socket buffer holds
    // in one turn (4 chunks of ~64 KB measured), ~2 ms of `set` parsing each, with handshakes
    // waiting behind. Reading also stops while a long reply is written or a set applied ('drain'
    // and onIdle resume it).
    socket.pause();
    setImmediate(() => {
      if (writable() && !session.busy) socket.resume();
    });
  });
  socket.on('drain', () => {
    if (!session.busy) socket.resume();
  });
  socket.on('end', () => {
    if (session.end() && !socket.writableEnded) socket.end();
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    session.abort();
    sockets.delete(socket);
  });
}

/**
 * Notices that the socket file is gone or replaced: inotify on the file itself (an unlink
 * changes its link count, so an event arrives at once), and a slow poll of its inode for when
 * no watch could be set (inotify limits) or an event was missed.
 */
class DeletionWatcher {
  private readonly callbacks: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;
  private fs: FSWatcher | undefined;
  private fired = false;

  constructor(path: string, private readonly ours: () => boolean) {
    try {
      this.fs = watch(path, { persistent: false }, () => this.check());
      this.fs.on('error', () => this.check());
    } catch {
      // No watch (e.g. the inotify limit is reached): the poll alone will notice.
    }
    this.timer = setInterval(() => this.check(), POLL_MS);
    this.timer.unref();
  }

  add(cb: () => void): void {
    this.callbacks.push(cb);
    if (this.fired) cb();
  }

  stop(): void {
    clearInterval(this.timer);
    this.fs?.close();
  }

  private check(): void {
    if (this.fired || this.ours()) return;
    this.fired = true;
    this.stop();
    for (const cb of this.callbacks) cb();
  }
}
