// The tables of the store, as Kysely sees them. One definition for every backend: the SQLite
// file of one server and the PostgreSQL database of a cluster (postgres.ts) run the same migrations
// (migrations.ts) and the same queries.
//
// Times are milliseconds since the epoch; byte counts and addresses are integers (an IPv4
// address as its 32-bit number, so allocation can find gaps and a unique index can guard it);
// lists are JSON text.
import type { Generated } from 'kysely';

/** One row (id 1): the server's identity and the settings `up` keeps. */
export interface ServerTable {
  id: number;
  private_key: string;
  /** The server's own address with the subnet's prefix, "10.8.0.1/24". */
  address: string;
  listen_port: number;
  mtu: number;
  endpoint: string | null;
  /** wg-quick lines of [Interface] that wireguard-ts does not manage (PostUp...), JSON array. */
  extra: string;
  created_at: number;
}

export interface ClientTable {
  id: Generated<number>;
  name: string;
  public_key: string;
  /** Kept so the configuration can be shown again; null for a peer imported without one. */
  private_key: string | null;
  preshared_key: string | null;
  /** The client's tunnel address in the server's subnet (unique), null for none. */
  address: number | null;
  /** The server side's AllowedIPs of this peer, JSON array, the address's /32 first. */
  allowed_ips: string;
  /** DNS and AllowedIPs of the client's own configuration, JSON arrays, null for the defaults. */
  dns: string | null;
  routes: string | null;
  /** Unmanaged wg-quick lines of the client's [Peer] section, JSON array. */
  extra: string;
  /** The administrator's switch; expiry and quota are applied on top of it. */
  enabled: number;
  expires_at: number | null;
  /** Monthly allowance of received + sent bytes, null for none. */
  quota_bytes: number | null;
  created_at: number;
}

/** The change feed: one row per change to a client, in order, for whoever applies them to a device. */
export interface ChangeTable {
  seq: Generated<number>;
  client_id: number;
  kind: 'create' | 'update' | 'delete';
  at: number;
}

export interface MetaTable {
  key: string;
  value: string;
}

export interface AdminTable {
  id: Generated<number>;
  username: string;
  /** argon2id, PHC string form. */
  password_hash: string;
  /** base32 TOTP secret when two-factor login is on. */
  totp_secret: string | null;
  created_at: number;
}

export interface SessionTable {
  /** SHA-256 of the cookie value: a copied database does not give live sessions. */
  id_hash: string;
  admin_id: number;
  created_at: number;
  expires_at: number;
}

export interface TokenTable {
  id: Generated<number>;
  name: string;
  /** SHA-256 of the token: it is shown once and never stored. */
  token_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** Traffic per client per bucket: period 60 s (kept a day) or 3600 s (kept 90 days). */
export interface TrafficTable {
  client_id: number;
  period: number;
  bucket: number;
  rx: number;
  tx: number;
}

export interface MonthlyTable {
  client_id: number;
  /** "YYYY-MM" in UTC. */
  month: string;
  rx: number;
  tx: number;
}

/** One row per cluster node (src/cluster/nodes.ts), written by its heartbeat. */
export interface NodeTable {
  name: string;
  started_at: number;
  heartbeat_at: number;
  /** The last change of the feed this node's device has. */
  applied_seq: number;
  /** Peers on the node's device, and those with a handshake in the last 180 s. */
  peers: number;
  online: number;
  /** Bytes received and sent by the node's device since it started. */
  rx: number;
  tx: number;
}

export interface Database {
  server: ServerTable;
  clients: ClientTable;
  changes: ChangeTable;
  meta: MetaTable;
  admins: AdminTable;
  sessions: SessionTable;
  tokens: TokenTable;
  traffic: TrafficTable;
  monthly: MonthlyTable;
  nodes: NodeTable;
}
