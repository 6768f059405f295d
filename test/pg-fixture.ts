// A throw-away PostgreSQL for the tests that need one: initdb in a temporary directory, pg_ctl
// on a port of its own with its unix socket in that directory (no TCP listener: nothing outside
// can reach it, and network namespaces reach it through the file system), stopped and removed
// at the end. It never assumes a server runs. initdb refuses root, so as root the cluster
// belongs to the `postgres` user that Debian's package creates.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const DEBIAN_BIN = '/usr/lib/postgresql';
const SUPERUSER = 'wgts';

/** The directory holding initdb and pg_ctl: Debian's newest version, or one on PATH. */
export function postgresBin(): string | undefined {
  if (existsSync(DEBIAN_BIN)) {
    const versions = readdirSync(DEBIAN_BIN).filter((v) => existsSync(join(DEBIAN_BIN, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(DEBIAN_BIN, versions[0], 'bin');
  }
  const r = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  return r.status === 0 ? join(r.stdout.trim(), '..') : undefined;
}

export const skipWithoutPostgres: string | false = postgresBin() === undefined ? 'PostgreSQL (initdb) is not installed: scripts/test.sh installs it' : false;

export interface TestPostgres {
  /** A URL for database `db` (created by createDatabase) over the unix socket. */
  url(db: string): string;
  createDatabase(db: string): Promise<string>;
  /** Stops the server at once (like a crash or a network cut) and starts it again after `downMs`. */
  restart(downMs: number): Promise<void>;
  stop(): void;
  start(): void;
  close(): void;
}

let nextPort = 25432 + (process.pid % 2000);

export function startPostgres(): TestPostgres {
  const bin = postgresBin();
  if (bin === undefined) throw new Error(skipWithoutPostgres as string);
  const dir = mkdtempSync(join(tmpdir(), 'wgts-pg-'));
  const data = join(dir, 'data');
  const port = nextPort++;
  const root = process.getuid?.() === 0;
  const owner = root ? spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }) : undefined;
  if (root) {
    if (owner!.status !== 0) throw new Error('there is no postgres user to run PostgreSQL as (initdb refuses root)');
    chownSync(dir, Number(owner!.stdout.trim()), Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()));
  }
  const run = (cmd: string, args: string[]): void => {
    const argv = root ? ['runuser', '-u', 'postgres', '--', join(bin, cmd), ...args] : [join(bin, cmd), ...args];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: dir });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  run('initdb', ['-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const start = (): void => run('pg_ctl', [
    '-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses='' -c fsync=off -c max_connections=200`, 'start',
  ]);
  const stop = (mode: 'fast' | 'immediate'): void => run('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
  start();
  const url = (db: string): string => `postgres://${SUPERUSER}@localhost/${db}?host=${encodeURIComponent(dir)}&port=${port}`;
  let closed = false;
  return {
    url,
    async createDatabase(db) {
      const c = new pg.Client({ connectionString: url('postgres') });
      await c.connect();
      try {
        await c.query(`create database "${db}"`);
      } finally {
        await c.end();
      }
      return url(db);
    },
    async restart(downMs) {
      stop('immediate');
      await new Promise((r) => setTimeout(r, downMs));
      start();
    },
    stop: () => stop('immediate'),
    start,
    close() {
      if (closed) return;
      closed = true;
      try {
        stop('immediate');
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
