// The store of a cluster: one PostgreSQL database shared by every node, through `pg` under
// Kysely, with the same migrations and queries as the SQLite file (kysely-repository.ts).
//
// - Writers of clients take one transaction-scoped advisory lock (WRITER_LOCK) first, so
//   changes commit in sequence order and address allocation never races between nodes; the
//   unique index on addresses stays the guard of last resort.
// - Each change is announced with pg_notify on FEED_CHANNEL inside its transaction, so
//   PostgreSQL delivers it to every LISTENing node (src/cluster/feed.ts) only once it commits.
// - Connections fail fast (CONNECT_TIMEOUT_MS) instead of hanging a command or the daemon's
//   timers while the database is away; the pool's idle connections that the server drops
//   (a restart) are reported and replaced, never thrown from an event (see the 'connect' hook).
// - The URL holds the database password: only describeStore()'s redacted form is ever printed.
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import { KyselyRepository, nameLike } from './kysely-repository.js';
import { migrations } from './migrations.js';
import type { Repository } from './repository.js';
import type { Database as Schema } from './schema.js';

/** The NOTIFY channel of the change feed; the payload is the change's sequence number. */
export const FEED_CHANNEL = 'wireguard_ts_changes';
/** The advisory lock key of client writers ("wgts" in ASCII). */
const WRITER_LOCK = 0x77677473;
const CONNECT_TIMEOUT_MS = 5_000;
const POOL_SIZE = 4;
const UNIQUE_VIOLATION = '23505';

export const isPostgresUrl = (s: string): boolean => /^postgres(ql)?:\/\//.test(s);

/** The URL without its password, for messages. */
export function describeStore(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Connection settings shared by the pool and the feed's listening connection. */
export function clientConfig(url: string): pg.ClientConfig {
  return { connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: 'wireguard-ts' };
}

/** 'Key (address)=(167772162) already exists.' -> "address". */
function uniqueViolation(err: unknown): string | undefined {
  const e = err as { code?: string; detail?: string };
  if (e.code !== UNIQUE_VIOLATION) return undefined;
  return /^Key \((\w+)\)/.exec(e.detail ?? '')?.[1];
}

export interface PostgresStoreOptions {
  /** Where a dropped idle connection is reported (the daemon's log); ignored when absent. */
  onPoolError?: (err: Error) => void;
}

/** Connects to and migrates the database at `url` (postgres://user:password@host:port/db). */
export async function openPostgresStore(url: string, o: PostgresStoreOptions = {}): Promise<Repository> {
  const pool = new pg.Pool({ ...clientConfig(url), max: POOL_SIZE });
  pool.on('error', (err) => o.onPoolError?.(err));
  // The pool listens for errors only on idle connections; one that breaks while a query holds
  // it (the server restarting under it) would otherwise be an uncaught 'error' event. Its
  // query is rejected and the pool discards it either way.
  pool.on('connect', (client) => client.on('error', (err) => o.onPoolError?.(err)));
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  const { error } = await new Migrator({ db, provider: migrations }).migrateToLatest();
  if (error !== undefined) {
    await db.destroy();
    throw error;
  }
  return new KyselyRepository(db, {
    uniqueViolation,
    serializeWriters: async (trx) => void (await sql`select pg_advisory_xact_lock(${WRITER_LOCK})`.execute(trx)),
    announce: async (trx, seq) => void (await sql`select pg_notify(${FEED_CHANNEL}, ${String(seq)})`.execute(trx)),
    // pg_trgm's index (migration 0003) serves the LIKE itself; the planner weighs it against a scan.
    nameContains: async (part) => (eb) => nameLike(eb, part),
    // Base64 holds no LIKE wildcard; the text_pattern_ops index serves the prefix under any collation.
    keyStartsWith: (eb, prefix) => eb('public_key', 'like', `${prefix}%`),
  });
}
