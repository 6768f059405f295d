// The Repository over Kysely: every query of the store, written once for every backend. A
// backend (sqlite.ts, postgres.ts) opens its connection, runs the migrations and hands over its
// Kysely instance plus the few things only it knows (Backend below).
//
// Every transaction that changes clients calls Backend.serializeWriters first. On SQLite that
// is nothing (BEGIN IMMEDIATE already queues writers); on PostgreSQL it is a transaction-scoped
// advisory lock, which gives two guarantees the change feed and allocation rely on: changes
// commit in the order of their sequence numbers (a reader that saw seq N never later finds an
// N-1 committed behind it), and the gap search for a free address never races another node's.
//
// Queries are typed by schema.ts; the one hand-written SQL fragment is the address gap search,
// which the builder cannot express more clearly.
import { sql, type Expression, type ExpressionBuilder, type Kysely, type Selectable, type SqlBool, type Transaction, type Updateable } from 'kysely';
import { formatIPv4 } from '../server/addresses.js';
import type { ClientTable, Database } from './schema.js';
import {
  ConflictError, monthOf, type Admin, type AddressRange, type ApiToken, type Change, type ClientPatch, type ClientQuery, type ClientRecord,
  type NewClient, type NodeRecord, type Repository, type ServerRecord, type TrafficDelta, type TrafficPoint,
} from './repository.js';

/** What differs between backends. */
export interface Backend {
  /** The column whose unique constraint an error reports, or undefined when it is not one. */
  uniqueViolation(err: unknown): string | undefined;
  /** Called first in every transaction that changes clients: one such writer at a time. */
  serializeWriters(trx: Transaction<Database>): Promise<void>;
  /** Called after a change row is written: tells followers once the transaction commits. */
  announce(trx: Transaction<Database>, seq: number): Promise<void>;
  /** The condition for clients whose name holds `part` in any case: through the backend's index where that is faster (migration 0003). */
  nameContains(part: string): Promise<(eb: ClientsWhere) => Expression<SqlBool>>;
  /** Clients whose public key starts with `prefix`, which holds only base64 characters, through an index. */
  keyStartsWith(eb: ClientsWhere, prefix: string): Expression<SqlBool>;
}

export type ClientsWhere = ExpressionBuilder<Database, 'clients'>;

/** The reference meaning of a name search, and what a backend runs when its index cannot answer. */
export function nameLike(eb: ClientsWhere, part: string): Expression<SqlBool> {
  const escaped = part.toLowerCase().replace(/[\\%_]/g, (ch) => `\\${ch}`);
  return eb(eb.fn('lower', ['name']), 'like', sql<string>`${`%${escaped}%`} escape '\\'`);
}

/** A search that could be the start of a public key (anything else cannot match one). */
const KEY_PREFIX = /^[A-Za-z0-9+/]+=?$/;

/** The meta key holding the highest pruned change sequence. */
const PRUNED_META = 'changes_pruned_through';

/** Rows per multi-row insert: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535. */
const CHUNK = 500;
/** An address taken between the gap search and the insert (PostgreSQL under read committed) is retried. */
const ALLOCATION_ATTEMPTS = 5;

const json = (v: readonly string[]): string => JSON.stringify(v);
const list = (v: string | null): string[] | undefined => (v === null ? undefined : (JSON.parse(v) as string[]));

function toClient(r: Selectable<ClientTable>): ClientRecord {
  const c: ClientRecord = {
    id: r.id, name: r.name, publicKey: r.public_key, allowedIps: list(r.allowed_ips)!, extra: list(r.extra)!,
    enabled: r.enabled === 1, createdAt: Number(r.created_at),
  };
  if (r.private_key !== null) c.privateKey = r.private_key;
  if (r.preshared_key !== null) c.presharedKey = r.preshared_key;
  if (r.address !== null) c.address = Number(r.address);
  if (r.dns !== null) c.dns = list(r.dns)!;
  if (r.routes !== null) c.routes = list(r.routes)!;
  if (r.expires_at !== null) c.expiresAt = Number(r.expires_at);
  if (r.quota_bytes !== null) c.quotaBytes = Number(r.quota_bytes);
  return c;
}

const floorTo = (at: number, periodS: number): number => at - (at % (periodS * 1000));
/** The periods of the traffic history, in seconds: minutes for a day, hours for 90 days. */
export const TRAFFIC_PERIODS = [60, 3600] as const;

export class KyselyRepository implements Repository {
  private readonly uniqueViolation: (err: unknown) => string | undefined;

  constructor(private readonly db: Kysely<Database>, private readonly backend: Backend) {
    this.uniqueViolation = (err) => backend.uniqueViolation(err);
  }

  close(): Promise<void> {
    return this.db.destroy();
  }

  private conflict<T>(err: unknown, what: string): T {
    const column = this.uniqueViolation(err);
    if (column === undefined) throw err;
    const field = column === 'public_key' ? 'publicKey' : column;
    throw new ConflictError(field, `${what}: that ${field === 'publicKey' ? 'public key' : field} is already taken`);
  }

  // ---- server ----

  async getServer(): Promise<ServerRecord | undefined> {
    const r = await this.db.selectFrom('server').selectAll().where('id', '=', 1).executeTakeFirst();
    if (r === undefined) return undefined;
    return {
      privateKey: r.private_key, address: r.address, listenPort: r.listen_port, mtu: r.mtu,
      ...(r.endpoint !== null ? { endpoint: r.endpoint } : {}), extra: list(r.extra)!, createdAt: Number(r.created_at),
    };
  }

  async saveServer(s: ServerRecord): Promise<void> {
    const row = {
      private_key: s.privateKey, address: s.address, listen_port: s.listenPort, mtu: s.mtu,
      endpoint: s.endpoint ?? null, extra: json(s.extra),
    };
    await this.db.insertInto('server').values({ id: 1, ...row, created_at: s.createdAt })
      .onConflict((oc) => oc.column('id').doUpdateSet(row)).execute();
  }

  async createServer(s: ServerRecord): Promise<{ server: ServerRecord; created: boolean }> {
    const r = await this.db.insertInto('server').values({
      id: 1, private_key: s.privateKey, address: s.address, listen_port: s.listenPort, mtu: s.mtu,
      endpoint: s.endpoint ?? null, extra: json(s.extra), created_at: s.createdAt,
    }).onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst();
    if (r !== undefined) return { server: s, created: true };
    return { server: (await this.getServer())!, created: false };
  }

  // ---- clients ----

  private async logChange(trx: Transaction<Database>, clientId: number, kind: Change['kind']): Promise<void> {
    const r = await trx.insertInto('changes').values({ client_id: clientId, kind, at: Date.now() }).returning('seq').executeTakeFirstOrThrow();
    await this.backend.announce(trx, r.seq);
  }

  private async insertClient(trx: Transaction<Database>, c: NewClient, address: number | null): Promise<ClientRecord> {
    const row = await trx.insertInto('clients').values({
      name: c.name, public_key: c.publicKey, private_key: c.privateKey ?? null, preshared_key: c.presharedKey ?? null,
      address, allowed_ips: json(c.allowedIps ?? (address === null ? [] : [`${formatIPv4(address)}/32`])),
      dns: c.dns === undefined ? null : json(c.dns), routes: c.routes === undefined ? null : json(c.routes),
      extra: json(c.extra), enabled: c.enabled ? 1 : 0, expires_at: c.expiresAt ?? null, quota_bytes: c.quotaBytes ?? null,
      created_at: c.createdAt ?? Date.now(),
    }).returningAll().executeTakeFirstOrThrow();
    await this.logChange(trx, row.id, 'create');
    return toClient(row);
  }

  async createClient(c: NewClient, range: AddressRange): Promise<ClientRecord> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx) => {
          await this.backend.serializeWriters(trx);
          return this.insertClient(trx, c, c.address !== undefined ? c.address : await this.freeAddress(trx, range));
        });
      } catch (err) {
        const allocated = c.address === undefined && this.uniqueViolation(err) === 'address';
        if (allocated && attempt < ALLOCATION_ATTEMPTS) continue;
        if (err instanceof ConflictError) throw err;
        return this.conflict(err, `client ${c.name}`);
      }
    }
  }

  async importState(server: ServerRecord, clients: readonly NewClient[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await this.backend.serializeWriters(trx);
      await trx.insertInto('server').values({
        id: 1, private_key: server.privateKey, address: server.address, listen_port: server.listenPort, mtu: server.mtu,
        endpoint: server.endpoint ?? null, extra: json(server.extra), created_at: server.createdAt,
      }).execute();
      for (const c of clients) await this.insertClient(trx, c, c.address ?? null);
    });
  }

  /**
   * The lowest address of the range that no client holds: the range's first address or one
   * just above a taken one, so the search walks the unique index once instead of the range.
   */
  private async freeAddress(trx: Transaction<Database>, range: AddressRange): Promise<number> {
    // Parameters are cast: PostgreSQL cannot infer a bare parameter's type in a union.
    const n = (v: number) => sql`cast(${v} as bigint)`;
    const r = await sql<{ a: number | string | null }>`
      select min(c) as a from (
        select ${n(range.first)} as c
        union all select address + 1 from clients where address is not null
        union all select ${n(range.reserved + 1)}
      ) as candidates
      where c >= ${n(range.first)} and c <= ${n(range.last)} and c <> ${n(range.reserved)}
        and not exists (select 1 from clients where address = c)`.execute(trx);
    const a = r.rows[0]?.a;
    if (a === null || a === undefined) throw new ConflictError('address', `no free address left from ${formatIPv4(range.first)} to ${formatIPv4(range.last)}`);
    return Number(a);
  }

  async getClient(id: number): Promise<ClientRecord | undefined> {
    const r = await this.db.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toClient(r);
  }

  async getClientByName(name: string): Promise<ClientRecord | undefined> {
    const r = await this.db.selectFrom('clients').selectAll().where('name', '=', name).executeTakeFirst();
    return r && toClient(r);
  }

  async listClients(q: ClientQuery): Promise<{ total: number; items: ClientRecord[] }> {
    let base = this.db.selectFrom('clients');
    if (q.searchAddress !== undefined) {
      // An address is looked up in its unique index, not scanned for as text in every name.
      base = base.where('address', '=', q.searchAddress);
    } else if (q.search !== undefined && q.search !== '') {
      const part = q.search;
      const nameContains = await this.backend.nameContains(part);
      base = base.where((eb) => (KEY_PREFIX.test(part) ? eb.or([nameContains(eb), this.backend.keyStartsWith(eb, part)]) : nameContains(eb)));
    }
    const column = q.sort === 'address' ? 'address' : q.sort === 'created' ? 'created_at' : 'name';
    const order = q.descending ? 'desc' : 'asc';
    let rows = base.selectAll().orderBy(column, order).orderBy('id', order);
    if (q.limit !== undefined) rows = rows.limit(q.limit).offset(q.offset ?? 0);
    const [items, count] = await Promise.all([
      rows.execute(),
      base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { total: Number(count.n), items: items.map(toClient) };
  }

  async updateClient(id: number, patch: ClientPatch): Promise<ClientRecord | undefined> {
    const set: Updateable<ClientTable> = {};
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.enabled !== undefined) set.enabled = patch.enabled ? 1 : 0;
    if (patch.expiresAt !== undefined) set.expires_at = patch.expiresAt;
    if (patch.quotaBytes !== undefined) set.quota_bytes = patch.quotaBytes;
    if (patch.allowedIps !== undefined) set.allowed_ips = json(patch.allowedIps);
    try {
      return await this.db.transaction().execute(async (trx) => {
        await this.backend.serializeWriters(trx);
        const row = Object.keys(set).length === 0
          ? await trx.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirst()
          : await trx.updateTable('clients').set(set).where('id', '=', id).returningAll().executeTakeFirst();
        if (row === undefined) return undefined;
        await this.logChange(trx, id, 'update');
        return toClient(row);
      });
    } catch (err) {
      return this.conflict(err, `client ${id}`);
    }
  }

  async deleteClient(id: number): Promise<ClientRecord | undefined> {
    return this.db.transaction().execute(async (trx) => {
      await this.backend.serializeWriters(trx);
      const row = await trx.deleteFrom('clients').where('id', '=', id).returningAll().executeTakeFirst();
      if (row === undefined) return undefined;
      await this.logChange(trx, id, 'delete');
      return toClient(row);
    });
  }

  // ---- change feed and settings ----

  async lastChange(): Promise<number> {
    const r = await this.db.selectFrom('changes').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    return Number(r?.seq ?? 0);
  }

  async changesSince(seq: number, limit: number): Promise<Change[]> {
    const rows = await this.db.selectFrom('changes').select(['seq', 'client_id', 'kind']).where('seq', '>', seq).orderBy('seq').limit(limit).execute();
    return rows.map((r) => ({ seq: r.seq, clientId: r.client_id, kind: r.kind }));
  }

  async pruneChanges(before: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await this.backend.serializeWriters(trx);
      const r = await trx.selectFrom('changes').select((eb) => eb.fn.max('seq').as('seq')).where('at', '<', before).executeTakeFirst();
      const seq = Number(r?.seq ?? 0);
      if (seq === 0) return;
      // Never the newest change: lastChange() must keep answering with the feed's head.
      const last = await trx.selectFrom('changes').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirstOrThrow();
      const through = Math.min(seq, Number(last.seq) - 1);
      if (through <= 0) return;
      await trx.deleteFrom('changes').where('seq', '<=', through).execute();
      await trx.insertInto('meta').values({ key: PRUNED_META, value: String(through) })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: String(through) })).execute();
    });
  }

  async prunedThrough(): Promise<number> {
    return Number((await this.getMeta(PRUNED_META)) ?? 0);
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst())?.value;
  }

  async setMeta(key: string, value: string | undefined): Promise<void> {
    if (value === undefined) await this.db.deleteFrom('meta').where('key', '=', key).execute();
    else await this.db.insertInto('meta').values({ key, value }).onConflict((oc) => oc.column('key').doUpdateSet({ value })).execute();
  }

  // ---- administrators, sessions, tokens ----

  async adminCount(): Promise<number> {
    const r = await this.db.selectFrom('admins').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async createAdmin(username: string, passwordHash: string): Promise<Admin> {
    try {
      const r = await this.db.insertInto('admins').values({ username, password_hash: passwordHash, totp_secret: null, created_at: Date.now() })
        .returning('id').executeTakeFirstOrThrow();
      return { id: r.id, username, passwordHash };
    } catch (err) {
      return this.conflict(err, `administrator ${username}`);
    }
  }

  private async admin(where: { username: string } | { id: number }): Promise<Admin | undefined> {
    let q = this.db.selectFrom('admins').selectAll();
    q = 'id' in where ? q.where('id', '=', where.id) : q.where('username', '=', where.username);
    const r = await q.executeTakeFirst();
    return r && { id: r.id, username: r.username, passwordHash: r.password_hash, ...(r.totp_secret !== null ? { totpSecret: r.totp_secret } : {}) };
  }

  getAdmin(username: string): Promise<Admin | undefined> {
    return this.admin({ username });
  }

  getAdminById(id: number): Promise<Admin | undefined> {
    return this.admin({ id });
  }

  async setAdminTotp(id: number, secret: string | undefined): Promise<void> {
    await this.db.updateTable('admins').set({ totp_secret: secret ?? null }).where('id', '=', id).execute();
  }

  async createSession(idHash: string, adminId: number, expiresAt: number): Promise<void> {
    await this.db.insertInto('sessions').values({ id_hash: idHash, admin_id: adminId, created_at: Date.now(), expires_at: expiresAt }).execute();
  }

  async getSession(idHash: string, now: number): Promise<{ adminId: number } | undefined> {
    const r = await this.db.selectFrom('sessions').select('admin_id').where('id_hash', '=', idHash).where('expires_at', '>', now).executeTakeFirst();
    return r && { adminId: r.admin_id };
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
  }

  async createToken(name: string, tokenHash: string): Promise<ApiToken> {
    try {
      const createdAt = Date.now();
      const r = await this.db.insertInto('tokens').values({ name, token_hash: tokenHash, created_at: createdAt, last_used_at: null, revoked_at: null })
        .returning('id').executeTakeFirstOrThrow();
      return { id: r.id, name, createdAt };
    } catch (err) {
      return this.conflict(err, `token ${name}`);
    }
  }

  async useToken(tokenHash: string, now: number): Promise<ApiToken | undefined> {
    const r = await this.db.updateTable('tokens').set({ last_used_at: now }).where('token_hash', '=', tokenHash).where('revoked_at', 'is', null)
      .returning(['id', 'name', 'created_at']).executeTakeFirst();
    return r && { id: r.id, name: r.name, createdAt: Number(r.created_at), lastUsedAt: now };
  }

  async listTokens(): Promise<ApiToken[]> {
    const rows = await this.db.selectFrom('tokens').select(['id', 'name', 'created_at', 'last_used_at', 'revoked_at']).orderBy('id').execute();
    return rows.map((r) => ({
      id: r.id, name: r.name, createdAt: Number(r.created_at),
      ...(r.last_used_at !== null ? { lastUsedAt: Number(r.last_used_at) } : {}), ...(r.revoked_at !== null ? { revokedAt: Number(r.revoked_at) } : {}),
    }));
  }

  async revokeToken(name: string, now: number): Promise<boolean> {
    const r = await this.db.updateTable('tokens').set({ revoked_at: now }).where('name', '=', name).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  // ---- traffic history ----

  async addTraffic(at: number, deltas: readonly TrafficDelta[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      // A client deleted since the sample was taken has nothing left to count against.
      const ids = new Set((await trx.selectFrom('clients').select('id').execute()).map((r) => r.id));
      const moved = deltas.filter((d) => ids.has(d.clientId) && (d.rx > 0 || d.tx > 0));
      const m = monthOf(at);
      for (let i = 0; i < moved.length; i += CHUNK) {
        const part = moved.slice(i, i + CHUNK);
        for (const period of TRAFFIC_PERIODS) {
          await trx.insertInto('traffic').values(part.map((d) => ({ client_id: d.clientId, period, bucket: floorTo(at, period), rx: d.rx, tx: d.tx })))
            .onConflict((oc) => oc.columns(['client_id', 'period', 'bucket']).doUpdateSet({ rx: sql`traffic.rx + excluded.rx`, tx: sql`traffic.tx + excluded.tx` }))
            .execute();
        }
        await trx.insertInto('monthly').values(part.map((d) => ({ client_id: d.clientId, month: m, rx: d.rx, tx: d.tx })))
          .onConflict((oc) => oc.columns(['client_id', 'month']).doUpdateSet({ rx: sql`monthly.rx + excluded.rx`, tx: sql`monthly.tx + excluded.tx` }))
          .execute();
      }
    });
  }

  async traffic(clientId: number, period: number, from: number): Promise<TrafficPoint[]> {
    const rows = await this.db.selectFrom('traffic').select(['bucket', 'rx', 'tx'])
      .where('client_id', '=', clientId).where('period', '=', period).where('bucket', '>=', from).orderBy('bucket').execute();
    return rows.map((r) => ({ bucket: Number(r.bucket), rx: Number(r.rx), tx: Number(r.tx) }));
  }

  async monthlyUsage(m: string, clientIds?: readonly number[]): Promise<Map<number, { rx: number; tx: number }>> {
    let q = this.db.selectFrom('monthly').select(['client_id', 'rx', 'tx']).where('month', '=', m);
    if (clientIds !== undefined) {
      if (clientIds.length === 0) return new Map();
      q = q.where('client_id', 'in', clientIds);
    }
    const rows = await q.execute();
    return new Map(rows.map((r) => [r.client_id, { rx: Number(r.rx), tx: Number(r.tx) }]));
  }

  async pruneTraffic(period: number, before: number): Promise<void> {
    await this.db.deleteFrom('traffic').where('period', '=', period).where('bucket', '<', before).execute();
  }

  // ---- cluster nodes ----

  async saveNode(n: NodeRecord): Promise<void> {
    const row = {
      started_at: n.startedAt, heartbeat_at: n.heartbeatAt, applied_seq: n.appliedSeq, peers: n.peers, online: n.online, rx: n.rx, tx: n.tx,
    };
    await this.db.insertInto('nodes').values({ name: n.name, ...row }).onConflict((oc) => oc.column('name').doUpdateSet(row)).execute();
  }

  async listNodes(): Promise<NodeRecord[]> {
    const rows = await this.db.selectFrom('nodes').selectAll().orderBy('name').execute();
    return rows.map((r) => ({
      name: r.name, startedAt: Number(r.started_at), heartbeatAt: Number(r.heartbeat_at), appliedSeq: Number(r.applied_seq),
      peers: r.peers, online: r.online, rx: Number(r.rx), tx: Number(r.tx),
    }));
  }
}
