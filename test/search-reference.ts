// The clients search of a store against a deliberately naive reference: a name holding the part
// in any case, or a public key starting with it. Run on seeded random names made of the name
// characters ('_' and '.' among them, which LIKE and FTS5 could take for syntax), with parts
// shorter and longer than a trigram, before and after renames and deletions (the index is kept
// by triggers on SQLite), and above the count where SQLite scans instead of using its index.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { ClientRecord, NewClient, Repository, ServerRecord } from '../src/store/repository.js';
import { newKeyPair } from '../src/server/keys.js';

const ALPHABET = 'abcAB01_.-';

/** A small deterministic generator (mulberry32), so a failure repeats. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const reference = (clients: readonly ClientRecord[], part: string): number[] =>
  clients.filter((c) => c.name.toLowerCase().includes(part.toLowerCase()) || c.publicKey.startsWith(part)).map((c) => c.id).sort((a, b) => a - b);

async function compare(store: Repository, parts: readonly string[]): Promise<void> {
  const all = (await store.listClients({})).items;
  for (const part of parts) {
    const found = await store.listClients({ search: part, sort: 'created' });
    const want = reference(all, part);
    assert.deepEqual(found.items.map((c) => c.id).sort((a, b) => a - b), want, `search ${JSON.stringify(part)}`);
    assert.equal(found.total, want.length, `total of search ${JSON.stringify(part)}`);
  }
}

/**
 * `crowd` clients named crowdNNNNN are added to a fresh store after the random ones, so that a
 * part they all hold matches more than `crowd - 1` names.
 */
export async function checkSearchAgainstReference(store: Repository, crowd: number): Promise<void> {
  const random = seeded(14);
  const pick = (s: string) => s[Math.floor(random() * s.length)]!;
  const names = new Set<string>();
  while (names.size < 300) names.add(pick('abcAB01') + Array.from({ length: Math.floor(random() * 10) }, () => pick(ALPHABET)).join(''));
  const server: ServerRecord = { privateKey: newKeyPair().privateKey, address: '10.0.0.1/8', listenPort: 51820, mtu: 1420, extra: [], createdAt: 1 };
  const clients: NewClient[] = [...names].map((name) => ({ name, publicKey: randomBytes(32).toString('base64'), extra: [], enabled: true }));
  for (let i = 0; i < crowd; i++) clients.push({ name: `crowd${String(i).padStart(5, '0')}`, publicKey: randomBytes(32).toString('base64'), extra: [], enabled: true });
  await store.importState(server, clients);

  const keys = clients.slice(0, 20).map((c) => c.publicKey);
  const parts = [
    ...[...names].slice(0, 60).map((n) => n.slice(Math.floor(random() * n.length), Math.floor(random() * n.length) + 4)).filter((p) => p !== ''),
    ...Array.from({ length: 60 }, () => Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(ALPHABET)).join('')),
    ...keys.map((k) => k.slice(0, 1 + Math.floor(random() * 43))), keys[0]!, keys[1]!.slice(0, 12).toLowerCase(),
    '%', 'a%b', '_', '"', 'a"b', 'ROWD', 'crowd0', 'xyz',
  ];
  await compare(store, parts);
  for (const c of (await store.listClients({ limit: 40 })).items) {
    if (c.id % 2 === 0) await store.updateClient(c.id, { name: `renamed${c.id}` });
    else await store.deleteClient(c.id);
  }
  await compare(store, [...parts, 'renamed', 'NAMED1']);
}
