// The device as the server mode's daemon side sees it: UAPI `set` and `get` on IFNAME's socket,
// the same interface `wg` uses, so the reconciler and the sampler work the same against this
// implementation, wireguard-go, or a fake device in tests.
import { uapiGet, uapiSet } from '../uapi/client.js';
import type { PeerState } from '../uapi/types.js';

export interface DeviceControl {
  set(lines: readonly string[]): Promise<void>;
  peers(): Promise<PeerState[]>;
}

export function uapiDevice(ifname: string, socketDir?: string): DeviceControl {
  return {
    set: (lines) => uapiSet(ifname, lines, socketDir),
    peers: async () => (await uapiGet(ifname, socketDir)).peers,
  };
}
