// The embedded store: one SQLite file per interface (<state-dir>/IFNAME.db), through
// better-sqlite3 under Kysely.
//
// - The file is created 0600 before SQLite opens it (its -wal and -shm files take the same
//   mode), so no other user can read keys at any moment.
// - WAL journal with synchronous=FULL: a commit is on disk when it returns, kill -9 or power
//   loss leaves the last committed state, and readers (the web page) never wait for a writer.
// - Write transactions begin IMMEDIATE: a transaction takes SQLite's write lock before its
//   first read, so two processes (a CLI command and the daemon) queue on the lock (busy
//   timeout) instead of both reading the same free address and one failing at commit. That
//   lock, not a lock file, is what serializes writers of the store.
// - A full disk fails the transaction (SQLITE_FULL) and leaves the file as it was.
// - A name search of 3 or more characters asks the FTS5 trigram index (migration 0003) for a
//   phrase: its trigrams at consecutive places, which is the part itself as a substring. FTS5
//   folds case like lower() for the ASCII that names are made of. (LIKE on the index would do
//   too, but not with an ESCAPE clause, and '_' is a name character.) The index costs per match
//   and a scan per client, so a part that most names hold (INDEX_MATCHES) is scanned for.
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, SqliteDialect, SqliteDriver, sql, type DatabaseConnection } from 'kysely';
import { closeSync, openSync } from 'node:fs';
import { KyselyRepository, nameLike, type ClientsWhere } from './kysely-repository.js';
import { migrations } from './migrations.js';
import type { Repository } from './repository.js';
import type { Database as Schema } from './schema.js';

/** How long a writer waits for another process's write transaction before failing. */
const BUSY_TIMEOUT_MS = 15_000;

class ImmediateDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateDialect extends SqliteDialect {
  constructor(private readonly database: Database.Database) {
    super({ database });
  }

  override createDriver(): SqliteDriver {
    return new ImmediateDriver({ database: this.database });
  }
}

/** "UNIQUE constraint failed: clients.address" -> "address". */
function uniqueViolation(err: unknown): string | undefined {
  const e = err as { code?: string; message?: string };
  if (e.code !== 'SQLITE_CONSTRAINT_UNIQUE' && e.code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') return undefined;
  return /failed: \w+\.(\w+)/.exec(e.message ?? '')?.[1];
}

/** The shortest part the trigram index answers: a shorter one has no trigram. */
const TRIGRAM = 3;
/**
 * Above this many matching names the index is slower than a scan: each match is a lookup in
 * the table and a row to sort (~1 us), where a scan reads a row in ~0.2 us and a page ordered by
 * name stops at its 50th match. Measured at 100k clients: every name matching took 60-100 ms
 * through the index, ~25 ms scanned; 300 matching took 1 ms and 30 ms.
 */
export const INDEX_MATCHES = 5_000;

function searchNames(db: Kysely<Schema>) {
  return async (part: string) => {
    if ([...part].length < TRIGRAM) return (eb: ClientsWhere) => nameLike(eb, part);
    const phrase = `"${part.replaceAll('"', '""')}"`;
    const matches = sql`select rowid from clients_search where clients_search match ${phrase}`;
    const r = await sql<{ n: number }>`select count(*) as n from (${matches} limit ${INDEX_MATCHES + 1})`.execute(db);
    if (r.rows[0]!.n > INDEX_MATCHES) return (eb: ClientsWhere) => nameLike(eb, part);
    return (eb: ClientsWhere) => eb('id', 'in', sql<number>`(${matches})`);
  };
}

/** A range of the unique index: keys are base64, so the prefix's last character has an ASCII successor. */
function keyStartsWith(eb: ClientsWhere, prefix: string) {
  const next = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  return eb.and([eb('public_key', '>=', prefix), eb('public_key', '<', next)]);
}

/** Opens (creating 0600 when missing) and migrates the store at `path`. */
export async function openSqliteStore(path: string): Promise<Repository> {
  closeSync(openSync(path, 'a', 0o600));
  const database = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = FULL');
  database.pragma('foreign_keys = ON');
  const db = new Kysely<Schema>({ dialect: new ImmediateDialect(database) });
  const { error } = await new Migrator({ db, provider: migrations }).migrateToLatest();
  if (error !== undefined) {
    await db.destroy();
    throw error;
  }
  return new KyselyRepository(db, {
    uniqueViolation, serializeWriters: async () => undefined, announce: async () => undefined, nameContains: searchNames(db), keyStartsWith,
  });
}
