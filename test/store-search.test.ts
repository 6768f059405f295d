// The clients search of the SQLite store (its FTS5 trigram index, migration 0003) against the
// naive reference of search-reference.ts.
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INDEX_MATCHES, openSqliteStore } from '../src/store/sqlite.js';
import { checkSearchAgainstReference } from './search-reference.js';

test('SQLite: the clients search finds what the naive reference finds, through renames and deletions', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wgts-search-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openSqliteStore(join(dir, 'wg0.db'));
  t.after(() => store.close());
  await checkSearchAgainstReference(store, INDEX_MATCHES + 1);
});
