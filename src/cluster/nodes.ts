// Cluster nodes: each daemon on a shared store writes a heartbeat row every HEARTBEAT_MS with
// its device's figures (peers, those seen recently, bytes) and the last change of the feed it
// applied; `cluster status` and GET /api/v1/cluster read them back. A node whose heartbeat is
// older than DOWN_AFTER_MS is shown down: it crashed, lost its network, or lost the database
// (then it keeps serving its clients from memory, but nobody can tell from here).
import type { NodeRecord, Repository } from '../store/repository.js';
import type { PeerState } from '../uapi/types.js';

export const HEARTBEAT_MS = 5_000;
/**
 * The device is read for the figures at most this often: a walk over 100k peers (a UAPI get of
 * megabytes when the device is in another process) is too much to repeat every heartbeat for
 * figures nobody needs to the second.
 */
export const FIGURES_MS = 30_000;
/** Four heartbeats missed. */
export const DOWN_AFTER_MS = 4 * HEARTBEAT_MS;
/** A peer with a handshake this recent counts as seen (a session lives 180 s). */
const SEEN_S = 180;

export interface NodeStatus extends NodeRecord {
  up: boolean;
  /** Changes of the feed the node has not applied (as of its last heartbeat). */
  lag: number;
}

export async function clusterStatus(store: Repository, now: number): Promise<NodeStatus[]> {
  const [nodes, last] = await Promise.all([store.listNodes(), store.lastChange()]);
  return nodes.map((n) => ({ ...n, up: now - n.heartbeatAt <= DOWN_AFTER_MS, lag: Math.max(0, last - n.appliedSeq) }));
}

export type DeviceFigures = Pick<NodeRecord, 'peers' | 'online' | 'rx' | 'tx'>;

/** A heartbeat's device figures from the device's peers. */
export function deviceFigures(peers: readonly PeerState[], now: number): DeviceFigures {
  let online = 0;
  let rx = 0;
  let tx = 0;
  for (const p of peers) {
    if (p.lastHandshakeSec !== 0 && now / 1000 - p.lastHandshakeSec < SEEN_S) online++;
    rx += Number(p.rxBytes);
    tx += Number(p.txBytes);
  }
  return { peers: peers.length, online, rx, tx };
}
