// The device as the server mode's daemon side sees it: UAPI `set` on IFNAME's socket, the same
// interface `wg` uses (validated and applied whole by the device), and peer figures either by
// UAPI `get` or, inside the daemon's own process, straight from the device's peer states: a
// UAPI get of 100k peers is tens of megabytes of text and seconds of the main thread, the same
// figures read in process cost a fraction of that.
import { uapiGet, uapiSet } from '../uapi/client.js';
import type { PeerState } from '../uapi/types.js';

export interface DeviceControl {
  set(lines: readonly string[]): Promise<void>;
  peers(): Promise<PeerState[]>;
}

/** `readPeers`: the device's own peer states when it runs in this process. */
export function uapiDevice(ifname: string, socketDir?: string, readPeers?: () => Iterable<PeerState>): DeviceControl {
  return {
    set: (lines) => uapiSet(ifname, lines, socketDir),
    peers: async () => (readPeers !== undefined ? [...readPeers()] : (await uapiGet(ifname, socketDir)).peers),
  };
}
