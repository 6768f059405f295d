// What the server mode asks of the host: the daemon process (the background mode of this same
// program, which returns once the interface and its UAPI socket exist), the interface's address
// and MTU through `ip`, and the host's own address for client configs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatSubnet, type Subnet4 } from './addresses.js';
import { ServerError } from './state.js';
import { socketPath } from '../uapi/server.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));
/** A daemon that has not exited this long after its interface was deleted is reported. */
const STOP_TIMEOUT_MS = 10_000;

export function linkExists(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}`);
}

function ip(args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) throw new ServerError(`cannot run ip: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message} (iproute2 is needed)`);
  if (r.status !== 0) throw new ServerError(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit status ${r.status}`}`);
  return r.stdout;
}

export interface DaemonOptions {
  /** The state directory whose store the daemon serves (its reconciler, traffic, HTTP). */
  stateDir: string;
  workers?: number;
  web?: { host: string; port: number };
  webBehindTls?: boolean;
  /** A cluster's store and this node's name, given to the daemon in its environment (not argv, which every user can read). */
  store?: string;
  node?: string;
}

/**
 * Starts the daemon for `ifname` in the background; resolves once it serves its socket and has
 * applied the store to its device.
 */
export function startDaemon(ifname: string, o: DaemonOptions): Promise<void> {
  const args = [
    ...process.execArgv, MAIN, '--server', o.stateDir,
    ...(o.workers !== undefined ? ['--workers', String(o.workers)] : []),
    ...(o.web !== undefined ? ['--web', `${o.web.host.includes(':') ? `[${o.web.host}]` : o.web.host}:${o.web.port}`] : []),
    ...(o.webBehindTls ? ['--web-behind-tls'] : []),
    ifname,
  ];
  return new Promise((resolve, reject) => {
    // The daemon's own error message (no TUN permission, a busy name...) goes straight to the
    // user's terminal; ours only adds what failed.
    const env = { ...process.env, ...(o.store !== undefined ? { WG_TS_STORE: o.store } : {}), ...(o.node !== undefined ? { WG_TS_NODE: o.node } : {}) };
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.once('error', (err) => reject(new ServerError(`cannot start the daemon: ${err.message}`)));
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new ServerError(`the daemon for ${ifname} did not start (${signal ?? `exit status ${code}`})`));
    });
  });
}

/**
 * Stops the daemon serving `ifname`: deleting the interface makes it exit (and takes the
 * interface's address with it); deleting its socket is the fallback when the interface cannot
 * be deleted from here. Resolves once the socket is gone.
 */
export async function stopDaemon(ifname: string): Promise<void> {
  const sock = socketPath(ifname);
  if (spawnSync('ip', ['link', 'del', 'dev', ifname]).status !== 0) rmSync(sock, { force: true });
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (existsSync(sock)) {
    if (Date.now() > deadline) throw new ServerError(`the daemon for ${ifname} did not exit within ${STOP_TIMEOUT_MS / 1000} s (its socket ${sock} is still there)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Gives the interface the server's address (its subnet routed to it), its MTU, and brings it up. */
export function configureLink(ifname: string, address: Subnet4, mtu: number): void {
  ip(['-4', 'address', 'replace', formatSubnet(address), 'dev', ifname]);
  ip(['link', 'set', 'dev', ifname, 'mtu', String(mtu), 'up']);
}

/**
 * This host's address as clients should see it: the source address of the default route
 * (`ip route get` only reads the routing table; nothing is sent). Behind NAT it is the private
 * address, hence the note the caller prints.
 */
export function detectHostAddress(): string | undefined {
  for (const [family, probe] of [['-4', '1.1.1.1'], ['-6', '2606:4700:4700::1111']] as const) {
    const r = spawnSync('ip', [family, 'route', 'get', probe], { encoding: 'utf8' });
    const src = r.status === 0 ? /\bsrc (\S+)/.exec(r.stdout)?.[1] : undefined;
    if (src !== undefined) return family === '-6' ? `[${src}]` : src;
  }
  return undefined;
}

/** Whether the host forwards IPv4 (clients then reach beyond the server, given NAT). */
export function ipv4Forwarding(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
