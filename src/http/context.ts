// What the HTTP layer needs from the daemon, and nothing more: the store, the server's
// settings, live peer figures, and a way to say that a client changed. The daemon
// (src/server/daemon.ts) provides it; tests provide it with a fake device.
import type { Repository, ServerRecord } from '../store/repository.js';
import type { PeerState } from '../uapi/types.js';

export interface HttpContext {
  store: Repository;
  server: ServerRecord;
  ifname: string;
  /** HOST:PORT written into client configurations. */
  endpoint: string;
  /** The device's peers by base64 public key (cached for a second: one UAPI get serves every page). */
  peers(): Promise<Map<string, PeerState>>;
  /** A client changed in the store: apply it to the device now and refresh the export soon. */
  changed(): Promise<void>;
  now(): number;
}

export interface HttpOptions {
  /** TLS or a reverse proxy terminates HTTPS in front: cookies are marked Secure. */
  behindTls: boolean;
  /** Root of the web page's files. */
  webRoot: string;
}
