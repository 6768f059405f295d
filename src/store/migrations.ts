// Versioned schema migrations, applied in name order by Kysely's Migrator at every open; each
// runs once and is recorded in the kysely_migration table. Written with the schema builder so
// that SQLite and PostgreSQL run the same list. Never edit a released migration: add one.
//
// The one difference between the dialects is a generated id: SQLite's `integer primary key
// autoincrement` is PostgreSQL's `serial primary key` (Kysely writes AUTO_INCREMENT, which
// PostgreSQL does not know). On SQLite the statements are exactly those of the first release.
import { PostgresAdapter, sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/** `table` with a generated integer primary key named `name`, in the database's own words. */
function withId<T extends string>(db: Kysely<unknown>, table: CreateTableBuilder<T, never>, name: string): CreateTableBuilder<T, string> {
  return db.getExecutor().adapter instanceof PostgresAdapter
    ? table.addColumn(name, 'serial', (c: ColumnDefinitionBuilder) => c.primaryKey())
    : table.addColumn(name, 'integer', (c: ColumnDefinitionBuilder) => c.primaryKey().autoIncrement());
}

const initial: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.createTable('meta')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createTable('server')
      .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
      .addColumn('private_key', 'text', (c) => c.notNull())
      .addColumn('address', 'text', (c) => c.notNull())
      .addColumn('listen_port', 'integer', (c) => c.notNull())
      .addColumn('mtu', 'integer', (c) => c.notNull())
      .addColumn('endpoint', 'text')
      .addColumn('extra', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await withId(db, db.schema.createTable('clients'), 'id')
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('public_key', 'text', (c) => c.notNull().unique())
      .addColumn('private_key', 'text')
      .addColumn('preshared_key', 'text')
      // The guard of address allocation: two writers can never both keep one address.
      .addColumn('address', 'bigint', (c) => c.unique())
      .addColumn('allowed_ips', 'text', (c) => c.notNull())
      .addColumn('dns', 'text')
      .addColumn('routes', 'text')
      .addColumn('extra', 'text', (c) => c.notNull())
      .addColumn('enabled', 'integer', (c) => c.notNull())
      .addColumn('expires_at', 'bigint')
      .addColumn('quota_bytes', 'bigint')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('clients_created').on('clients').column('created_at').execute();
    await withId(db, db.schema.createTable('changes'), 'seq')
      .addColumn('client_id', 'integer', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .execute();
    await withId(db, db.schema.createTable('admins'), 'id')
      .addColumn('username', 'text', (c) => c.notNull().unique())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('totp_secret', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createTable('sessions')
      .addColumn('id_hash', 'text', (c) => c.primaryKey())
      .addColumn('admin_id', 'integer', (c) => c.notNull().references('admins.id').onDelete('cascade'))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await withId(db, db.schema.createTable('tokens'), 'id')
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('last_used_at', 'bigint')
      .addColumn('revoked_at', 'bigint')
      .execute();
    await db.schema.createTable('traffic')
      .addColumn('client_id', 'integer', (c) => c.notNull().references('clients.id').onDelete('cascade'))
      .addColumn('period', 'integer', (c) => c.notNull())
      .addColumn('bucket', 'bigint', (c) => c.notNull())
      .addColumn('rx', 'bigint', (c) => c.notNull())
      .addColumn('tx', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('traffic_pk', ['client_id', 'period', 'bucket'])
      .execute();
    await db.schema.createIndex('traffic_age').on('traffic').columns(['period', 'bucket']).execute();
    await db.schema.createTable('monthly')
      .addColumn('client_id', 'integer', (c) => c.notNull().references('clients.id').onDelete('cascade'))
      .addColumn('month', 'text', (c) => c.notNull())
      .addColumn('rx', 'bigint', (c) => c.notNull())
      .addColumn('tx', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('monthly_pk', ['client_id', 'month'])
      .execute();
  },
};

/**
 * The cluster (src/cluster): each node's heartbeat row, read by `cluster status`; the node's
 * figures are its own device's (peers seen recently, bytes since it started) and the last
 * change of the feed it applied.
 */
const nodes: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.createTable('nodes')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('heartbeat_at', 'bigint', (c) => c.notNull())
      .addColumn('applied_seq', 'bigint', (c) => c.notNull())
      .addColumn('peers', 'integer', (c) => c.notNull())
      .addColumn('online', 'integer', (c) => c.notNull())
      .addColumn('rx', 'bigint', (c) => c.notNull())
      .addColumn('tx', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('changes_at').on('changes').column('at').execute();
  },
};

/**
 * Indexes for the clients search (a case-insensitive part of a name, or the start of a public
 * key), which otherwise reads every row: the page and its count both do, ~100 ms at 100k.
 *
 * SQLite: an FTS5 trigram index of names, kept by triggers. It stores no copy of the names
 * (content='clients') and answers a part of 3 or more characters; shorter parts are scanned
 * (sqlite.ts). Public keys use their unique index, searched as a range.
 *
 * PostgreSQL: a pg_trgm GIN index of lower(name), which serves the LIKE query as it is, and a
 * byte-order index of public keys for LIKE 'prefix%' under any collation. pg_trgm ships with
 * PostgreSQL's contrib; a server built without it gets no name index (the search still answers,
 * by reading every row), and that is not retried later: CREATE the index by hand after
 * installing contrib.
 */
const clientSearch: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    if (db.getExecutor().adapter instanceof PostgresAdapter) {
      const trgm = await sql<{ n: number }>`select count(*)::int as n from pg_available_extensions where name = 'pg_trgm'`.execute(db);
      if (trgm.rows[0]!.n > 0) {
        await sql`create extension if not exists pg_trgm`.execute(db);
        await db.schema.createIndex('clients_name_trgm').on('clients').using('gin').expression(sql`lower(name) gin_trgm_ops`).execute();
      }
      await db.schema.createIndex('clients_key_prefix').on('clients').expression(sql`public_key text_pattern_ops`).execute();
      return;
    }
    await sql`create virtual table clients_search using fts5(name, content='clients', content_rowid='id', tokenize='trigram')`.execute(db);
    const remove = sql`insert into clients_search(clients_search, rowid, name) values ('delete', old.id, old.name);`;
    const add = sql`insert into clients_search(rowid, name) values (new.id, new.name);`;
    await sql`create trigger clients_search_insert after insert on clients begin ${add} end`.execute(db);
    await sql`create trigger clients_search_delete after delete on clients begin ${remove} end`.execute(db);
    await sql`create trigger clients_search_rename after update of name on clients begin ${remove} ${add} end`.execute(db);
    await sql`insert into clients_search(clients_search) values ('rebuild')`.execute(db);
  },
};

export const migrations: MigrationProvider = {
  getMigrations: async () => ({ '0001_initial': initial, '0002_nodes': nodes, '0003_client_search': clientSearch }),
};
