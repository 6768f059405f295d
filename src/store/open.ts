// Which store a server uses: the cluster's PostgreSQL when a URL is given (--store or
// WG_TS_STORE), otherwise the SQLite file of its state directory.
import { describeStore, openPostgresStore, type PostgresStoreOptions } from './postgres.js';
import type { Repository } from './repository.js';
import { openSqliteStore } from './sqlite.js';

export interface StoreLocation {
  /** postgres://... of a cluster. */
  url?: string;
  /** The SQLite file, used when there is no URL. */
  file: string;
}

export function openStoreAt(at: StoreLocation, o: PostgresStoreOptions = {}): Promise<Repository> {
  return at.url !== undefined ? openPostgresStore(at.url, o) : openSqliteStore(at.file);
}

/** The store as messages name it (never with a password). */
export const describeLocation = (at: StoreLocation): string => (at.url !== undefined ? describeStore(at.url) : at.file);
