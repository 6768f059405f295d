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
import Database from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, SqliteDialect, SqliteDriver, type DatabaseConnection } from 'kysely';
import { closeSync, openSync } from 'node:fs';
import { KyselyRepository } from './kysely-repository.js';
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
  return new KyselyRepository(db, { uniqueViolation, serializeWriters: async () => undefined, announce: async () => undefined });
}
