// Applies the store to the device, live: the only writer of the daemon's peers in server mode.
//
// - At start, one `set` with replace_peers=true installs the server key, port and every client
//   that should be on the device.
// - Then it follows the store's change feed (every change to a client, from this process's HTTP
//   API or from a CLI command in another process) and applies each changed client: added,
//   removed, re-keyed, new allowed IPs. The last applied sequence is written back to the store
//   (under this node's key in a cluster) so a CLI command can wait until its change is live.
// - A reader that fell behind the feed's pruning (a node offline for longer than the feed is
//   kept) cannot know what it missed: it resyncs in full instead.
// - Applying is idempotent (the device is compared with the store per client), and the applied
//   sequence only moves forward once the device has the change: a change is never skipped, and
//   one read twice after a failure changes nothing twice.
// - `enforce()` re-evaluates what time and usage decide (expiry, the monthly quota, a new month
//   lifting a quota stop) for every client; the runtime calls it after each traffic sample.
//
// A client belongs on the device when clientState() says 'active'. A peer removed and added
// again starts with zero counters; `onReset` tells the traffic sampler so.
//
// Operations are serialized on one promise chain: a follow and an enforce never interleave.
import type { ClientRecord, Repository, ServerRecord } from '../store/repository.js';
import { monthOf } from '../store/repository.js';
import { clientState } from './clients.js';
import type { DeviceControl } from './device.js';
import { keyHex } from './keys.js';
import { APPLIED_META } from './meta.js';

/** Changes read from the feed per round. */
const FEED_BATCH = 1000;

interface Applied {
  publicKey: string;
  allowedIps: string;
}

const withPrefix = (a: string): string => (a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`);

export function peerLines(c: ClientRecord): string[] {
  return [
    `public_key=${keyHex(c.publicKey)}`,
    ...(c.presharedKey !== undefined ? [`preshared_key=${keyHex(c.presharedKey)}`] : []),
    'replace_allowed_ips=true',
    ...c.allowedIps.map((a) => `allowed_ip=${withPrefix(a)}`),
  ];
}

const removeLines = (publicKey: string): string[] => [`public_key=${keyHex(publicKey)}`, 'remove=true'];

export class Reconciler {
  private readonly onDevice = new Map<number, Applied>();
  private readonly byKey = new Map<string, number>();
  private applied = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Repository,
    private readonly device: DeviceControl,
    private readonly now: () => number = Date.now,
    private readonly onReset: (clientId: number) => void = () => undefined,
    /** The meta key of the applied sequence: one per node in a cluster. */
    private readonly appliedKey: string = APPLIED_META,
  ) {}

  /** The last change of the feed the device has. */
  get appliedSeq(): number {
    return this.applied;
  }

  /** Peers on the device now. */
  get size(): number {
    return this.onDevice.size;
  }

  /** The client a device peer belongs to, by base64 public key. */
  clientOf(publicKey: string): number | undefined {
    return this.byKey.get(publicKey);
  }

  /** Whether the client is on the device now. */
  isOnDevice(clientId: number): boolean {
    return this.onDevice.has(clientId);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Installs the server and every active client, replacing whatever peers the device had. */
  fullSync(server: ServerRecord): Promise<void> {
    return this.serial(async () => {
      const seq = await this.store.lastChange();
      const { items } = await this.store.listClients({ sort: 'created' });
      const active = await this.activeOf(items);
      await this.device.set([
        `private_key=${keyHex(server.privateKey)}`, `listen_port=${server.listenPort}`, 'replace_peers=true', ...active.flatMap(peerLines),
      ]);
      this.onDevice.clear();
      this.byKey.clear();
      for (const c of active) this.record(c);
      await this.markApplied(seq);
    });
  }

  /** Applies the changes of the feed made since the last call. */
  follow(): Promise<void> {
    return this.serial(async () => {
      if (this.applied < (await this.store.prunedThrough())) {
        // Every client compared with the device, so sessions of unchanged clients live on.
        const seq = await this.store.lastChange();
        const { items } = await this.store.listClients({});
        await this.apply(items.map((c) => c.id).concat([...this.onDevice.keys()]), await this.activeOf(items));
        await this.markApplied(seq);
        return;
      }
      for (;;) {
        const changes = await this.store.changesSince(this.applied, FEED_BATCH);
        if (changes.length === 0) return;
        const ids = [...new Set(changes.map((c) => c.clientId))];
        const clients = (await Promise.all(ids.map((id) => this.store.getClient(id)))).filter((c): c is ClientRecord => c !== undefined);
        await this.apply(ids, await this.activeOf(clients));
        await this.markApplied(changes.at(-1)!.seq);
      }
    });
  }

  /** Re-evaluates expiry and quota for every client. */
  enforce(): Promise<void> {
    return this.serial(async () => {
      const { items } = await this.store.listClients({});
      await this.apply(items.map((c) => c.id).concat([...this.onDevice.keys()]), await this.activeOf(items));
    });
  }

  private async activeOf(clients: readonly ClientRecord[]): Promise<ClientRecord[]> {
    const now = this.now();
    const usage = await this.store.monthlyUsage(monthOf(now), clients.some((c) => c.quotaBytes !== undefined) ? undefined : []);
    return clients.filter((c) => {
      const u = usage.get(c.id);
      return clientState(c, now, u === undefined ? 0 : u.rx + u.tx) === 'active';
    });
  }

  /** Makes the device match `active` for the clients `ids` (any of them may be gone from the store). */
  private async apply(ids: readonly number[], active: readonly ClientRecord[]): Promise<void> {
    const want = new Map(active.map((c) => [c.id, c]));
    const lines: string[] = [];
    const added: ClientRecord[] = [];
    const removed: number[] = [];
    for (const id of new Set(ids)) {
      const have = this.onDevice.get(id);
      const c = want.get(id);
      if (c !== undefined) {
        if (have !== undefined && have.publicKey === c.publicKey && have.allowedIps === c.allowedIps.join(',')) continue;
        if (have !== undefined && have.publicKey !== c.publicKey) lines.push(...removeLines(have.publicKey));
        lines.push(...peerLines(c));
        added.push(c);
      } else if (have !== undefined) {
        lines.push(...removeLines(have.publicKey));
        removed.push(id);
      }
    }
    if (lines.length === 0) return;
    await this.device.set(lines);
    for (const id of removed) {
      this.byKey.delete(this.onDevice.get(id)!.publicKey);
      this.onDevice.delete(id);
      this.onReset(id);
    }
    for (const c of added) {
      const old = this.onDevice.get(c.id);
      if (old !== undefined) this.byKey.delete(old.publicKey);
      if (old === undefined || old.publicKey !== c.publicKey) this.onReset(c.id);
      this.record(c);
    }
  }

  private record(c: ClientRecord): void {
    this.onDevice.set(c.id, { publicKey: c.publicKey, allowedIps: c.allowedIps.join(',') });
    this.byKey.set(c.publicKey, c.id);
  }

  private async markApplied(seq: number): Promise<void> {
    this.applied = seq;
    await this.store.setMeta(this.appliedKey, String(seq));
  }
}
