// A node's ear on the cluster's change feed: one dedicated PostgreSQL connection that LISTENs
// on the feed's channel (every committed change to a client is NOTIFY'd there by the store,
// src/store/postgres.ts), and says `changed` on each notification.
//
// What to apply is never taken from a notification: the node's reconciler reads the changes
// table from the last sequence it applied, so a notification lost, duplicated or merged with
// another changes nothing. The notification only says "read now", which is what keeps
// propagation well under a second without polling the database.
//
// The connection is the node's view of the database's health. When it drops (a restart, a
// network cut), the node goes on serving the clients its device has, logs the outage once,
// and reconnects with exponential backoff (BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS, with
// jitter so that a hundred nodes do not reconnect in step). Once LISTEN is back it says
// `reconnected`, and the reconciler catches up from its last sequence (or resyncs in full if
// that was pruned meanwhile).
import pg from 'pg';
import type { Logger } from 'pino';
import { FEED_CHANNEL, clientConfig } from '../store/postgres.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export interface FeedEvents {
  /** A change was committed: read the feed. */
  changed(): void;
  /** Listening (again): whatever happened while not listening must be read. */
  reconnected(): void;
}

export class ChangeFeed {
  private client: pg.Client | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private down = false;
  private closed = false;

  constructor(private readonly url: string, private readonly events: FeedEvents, private readonly log: Logger) {}

  /** Whether the node listens now (false during an outage). */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Connects; a failure is not thrown but retried like an outage. */
  start(): Promise<void> {
    return this.connect();
  }

  private async connect(): Promise<void> {
    this.retry = undefined;
    if (this.closed) return;
    const c = new pg.Client(clientConfig(this.url));
    let gone = false;
    const lost = (err: Error): void => {
      if (gone) return;
      gone = true;
      this.lost(c, err);
    };
    c.on('error', lost);
    c.on('end', () => lost(new Error('the connection was closed')));
    c.on('notification', () => this.events.changed());
    try {
      await c.connect();
      await c.query(`listen ${FEED_CHANNEL}`);
    } catch (err) {
      lost(err as Error);
      return;
    }
    if (gone || this.closed) return void c.end().catch(() => undefined);
    this.client = c;
    this.failures = 0;
    if (this.down) this.log.warn('store reachable again: catching up with the change feed');
    this.down = false;
    this.events.reconnected();
  }

  private lost(c: pg.Client, err: Error): void {
    if (this.client === c) this.client = undefined;
    c.end().catch(() => undefined);
    if (this.closed) return;
    if (!this.down) {
      this.down = true;
      this.log.error({ err: err.message }, 'store unreachable: serving the clients on the device from memory, retrying');
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.failures++);
    this.retry = setTimeout(() => void this.connect(), delay / 2 + Math.random() * (delay / 2));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}
