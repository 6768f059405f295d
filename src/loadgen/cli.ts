// `wireguard-ts loadgen keys|config|run`: the command-line face of the load generator. Exit
// status: 0 after a run in which at least one handshake completed, 1 when none did or the run
// could not start, 2 for a usage mistake.
import { readFileSync, writeFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { isIPv6 } from 'node:net';
import { keyBytes } from '../server/keys.js';
import { formatKeysFile, formatPeers, generateClients, parseKeysFile, wipeClients, type ClientKey } from './keys.js';
import { USAGE, UsageError, checkPlan, parseLoadgenArgs, type RunOptions } from './options.js';
import { ThreadedEngine } from './threads.js';
import { buildReport, formatProgress, formatReport } from './stats.js';

function readKeys(path: string): ClientKey[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--keys: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parseKeysFile(text);
  } catch (err) {
    throw new UsageError(`--keys: ${path}: ${(err as Error).message}`);
  }
}

/** Prints per-second progress on stderr while a run goes, when stderr is a terminal. */
function startProgress(engine: ThreadedEngine): () => void {
  if (!process.stderr.isTTY) return () => {};
  const t0 = performance.now();
  let prev = engine.snapshot();
  let prevMs = t0;
  const timer = setInterval(() => {
    const now = performance.now();
    const cur = engine.snapshot();
    process.stderr.write(`\r\x1b[K${formatProgress((now - t0) / 1000, prev, cur, (now - prevMs) / 1000)}`);
    prev = cur;
    prevMs = now;
  }, 1000);
  return () => {
    clearInterval(timer);
    process.stderr.write('\n');
  };
}

async function run(o: RunOptions): Promise<number> {
  const keys = readKeys(o.keys);
  try {
    const clients = checkPlan(o, keys.length);
    const family = o.sources.length > 0 ? (isIPv6(o.sources[0]!) ? 6 : 4) : isIPv6(o.serverHost) ? 6 : 4;
    const server = await lookup(o.serverHost, { family }).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`--server: cannot resolve ${o.serverHost} to an IPv${family} address: ${err.code ?? err.message}`);
    });
    const engine = await ThreadedEngine.open({
      serverAddress: server.address, serverPort: o.serverPort, serverKey: keyBytes(o.serverKey), clients: keys.slice(0, clients),
      sources: o.sources, family, rate: o.rate, initiations: o.initiations, durationMs: o.durationS * 1000, timeoutMs: o.timeoutMs,
      dataRate: o.dataRate, packets: o.packets, size: o.size, proto: o.proto, target: o.target, targetPort: o.targetPort,
      ephemerals: o.ephemerals,
    }, o.threads);
    const onSigint = (): void => engine.stop();
    process.on('SIGINT', onSigint);
    const stopProgress = startProgress(engine);
    try {
      const report = buildReport(await engine.run());
      stopProgress();
      process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
      return report.handshakes > 0 ? 0 : 1;
    } finally {
      process.off('SIGINT', onSigint);
      engine.close();
    }
  } finally {
    wipeClients(keys);
  }
}

export async function runLoadgenCli(argv: readonly string[]): Promise<number> {
  try {
    const o = parseLoadgenArgs(argv);
    if (o === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    switch (o.command) {
      case 'keys': {
        const clients = generateClients(o.clients, o.tunnel);
        try {
          // Never over an existing file: it would keep its mode, and may hold keys a server uses.
          writeFileSync(o.out, formatKeysFile(clients), { mode: 0o600, flag: 'wx' });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new UsageError(`--out: cannot create ${o.out}: ${code === 'EEXIST' ? 'it exists (remove it first)' : code ?? (err as Error).message}`);
        } finally {
          wipeClients(clients);
        }
        process.stdout.write(formatPeers(clients, 'addconf'));
        return 0;
      }
      case 'config': {
        const clients = readKeys(o.keys);
        process.stdout.write(formatPeers(clients, o.format));
        wipeClients(clients);
        return 0;
      }
      case 'run':
        return await run(o);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message.trimEnd()}\n`);
      return 2;
    }
    process.stderr.write(`wireguard-ts loadgen: ${(err as Error).message}\n`);
    return 1;
  }
}
