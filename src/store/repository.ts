// The store's one interface: everything the server mode keeps (server identity, clients, the
// change feed, administrators, sessions, API tokens, traffic history, cluster nodes) goes
// through it. The SQLite file (sqlite.ts) is the embedded default; PostgreSQL (postgres.ts) is
// the store of a cluster, with the same queries (kysely-repository.ts) and migrations.
//
// Every method that changes a client also appends to the change feed in the same transaction,
// so whoever applies clients to a device (src/server/reconciler.ts) can follow the feed and
// never miss or reorder a change.

export interface ServerRecord {
  privateKey: string;
  /** "10.8.0.1/24": the server's address and the client subnet. */
  address: string;
  listenPort: number;
  mtu: number;
  endpoint?: string;
  extra: string[];
  createdAt: number;
}

export interface ClientRecord {
  id: number;
  name: string;
  publicKey: string;
  privateKey?: string;
  presharedKey?: string;
  /** The tunnel address, a 32-bit number; absent for a hand-made peer outside the subnet. */
  address?: number;
  allowedIps: string[];
  dns?: string[];
  routes?: string[];
  extra: string[];
  enabled: boolean;
  expiresAt?: number;
  quotaBytes?: number;
  createdAt: number;
}

/** A client to create. */
export type NewClient = Omit<ClientRecord, 'id' | 'address' | 'allowedIps' | 'createdAt'> & {
  /** Absent: the store allocates the lowest free one; null: none (a hand-made peer). */
  address?: number | null;
  /** The server side's AllowedIPs; absent: the address's /32. */
  allowedIps?: string[];
  createdAt?: number;
};

export interface ClientPatch {
  name?: string;
  enabled?: boolean;
  expiresAt?: number | null;
  quotaBytes?: number | null;
  allowedIps?: string[];
}

/** Where client addresses come from: first..last inclusive, minus the server's own. */
export interface AddressRange {
  first: number;
  last: number;
  reserved: number;
}

export const CLIENT_SORTS = ['name', 'address', 'created'] as const;
export type ClientSort = (typeof CLIENT_SORTS)[number];

export interface ClientQuery {
  /** Part of a name in any case, or the start of a public key as written (base64 is case-sensitive). */
  search?: string;
  /** The client with this address, instead of `search` (the caller parses a search that is an IPv4 address). */
  searchAddress?: number;
  sort?: ClientSort;
  descending?: boolean;
  offset?: number;
  /** Absent: every client (exports, a device's full sync). */
  limit?: number;
}

export interface Change {
  seq: number;
  clientId: number;
  kind: 'create' | 'update' | 'delete';
}

export interface Admin {
  id: number;
  username: string;
  passwordHash: string;
  totpSecret?: string;
}

export interface ApiToken {
  id: number;
  name: string;
  createdAt: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

/** What the sampler measured for one client since its previous sample. */
export interface TrafficDelta {
  clientId: number;
  rx: number;
  tx: number;
}

/** The calendar month of a time in UTC ("YYYY-MM"), the key of monthly totals. */
export const monthOf = (at: number): string => new Date(at).toISOString().slice(0, 7);

export interface TrafficPoint {
  bucket: number;
  rx: number;
  tx: number;
}

/** A cluster node's heartbeat (src/cluster/nodes.ts). */
export interface NodeRecord {
  name: string;
  startedAt: number;
  heartbeatAt: number;
  appliedSeq: number;
  peers: number;
  online: number;
  rx: number;
  tx: number;
}

/** A unique value already taken (a name, a key, an address): `field` names it. */
export class ConflictError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

export interface Repository {
  close(): Promise<void>;

  getServer(): Promise<ServerRecord | undefined>;
  /** Creates the server, or replaces its settings (the key only changes with a new store). */
  saveServer(s: ServerRecord): Promise<void>;
  /**
   * Creates the server unless there is one; returns the one kept and whether it is `s`. Two
   * nodes of a cluster brought up at once agree on one key this way.
   */
  createServer(s: ServerRecord): Promise<{ server: ServerRecord; created: boolean }>;

  /**
   * Inserts a client; without an address, the lowest free one of `range` is allocated in the
   * same transaction (the unique index on addresses is the guard between concurrent writers).
   */
  createClient(c: NewClient, range: AddressRange): Promise<ClientRecord>;
  /** Creates the server and its clients in one transaction: all or nothing. */
  importState(server: ServerRecord, clients: readonly NewClient[]): Promise<void>;
  getClient(id: number): Promise<ClientRecord | undefined>;
  getClientByName(name: string): Promise<ClientRecord | undefined>;
  listClients(q: ClientQuery): Promise<{ total: number; items: ClientRecord[] }>;
  updateClient(id: number, patch: ClientPatch): Promise<ClientRecord | undefined>;
  deleteClient(id: number): Promise<ClientRecord | undefined>;

  lastChange(): Promise<number>;
  changesSince(seq: number, limit: number): Promise<Change[]>;
  /**
   * Drops changes older than `before` (ms). The highest sequence dropped is kept, so a reader
   * that applied less than it knows that it missed changes and must resync in full.
   */
  pruneChanges(before: number): Promise<void>;
  /** The highest sequence pruneChanges dropped (0 for none). */
  prunedThrough(): Promise<number>;

  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string | undefined): Promise<void>;

  adminCount(): Promise<number>;
  createAdmin(username: string, passwordHash: string): Promise<Admin>;
  getAdmin(username: string): Promise<Admin | undefined>;
  getAdminById(id: number): Promise<Admin | undefined>;
  setAdminTotp(id: number, secret: string | undefined): Promise<void>;

  createSession(idHash: string, adminId: number, expiresAt: number): Promise<void>;
  getSession(idHash: string, now: number): Promise<{ adminId: number } | undefined>;
  deleteSession(idHash: string): Promise<void>;

  createToken(name: string, tokenHash: string): Promise<ApiToken>;
  /** The token with this hash unless revoked; marks it used. */
  useToken(tokenHash: string, now: number): Promise<ApiToken | undefined>;
  listTokens(): Promise<ApiToken[]>;
  revokeToken(name: string, now: number): Promise<boolean>;

  /** Adds one sample's deltas to the minute and hour buckets and the month, in one transaction. */
  addTraffic(at: number, deltas: readonly TrafficDelta[]): Promise<void>;
  traffic(clientId: number, period: number, from: number): Promise<TrafficPoint[]>;
  /** rx + tx of `month` ("YYYY-MM") per client, for the given clients or all. */
  monthlyUsage(month: string, clientIds?: readonly number[]): Promise<Map<number, { rx: number; tx: number }>>;
  /** Drops buckets of `period` older than `before`. */
  pruneTraffic(period: number, before: number): Promise<void>;

  saveNode(n: NodeRecord): Promise<void>;
  listNodes(): Promise<NodeRecord[]>;
}
