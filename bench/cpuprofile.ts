// Self time per function and per source file of node --cpu-prof profiles, one block per thread
// (node writes one profile per thread, CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread
// 0 is the main thread, workers count up from 1 and a listen-port change restarts them with new
// numbers). A `pids.json` ({"PID": "sender"}) in the directory names the processes.
//
// A synchronous FFI call's time is charged to the JS function that made it: `sendBatch` is
// sendmmsg(2), `readBatch` read(2), and `PollSet.wait` a worker asleep in poll(2), which is
// counted as idle here.
//
//   node dist/bench/cpuprofile.js DIR [--top N] [--min-busy-ms MS]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { numberArg } from './pairings.js';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface Profile { nodes: { id: number; callFrame: CallFrame }[]; samples: number[]; timeDeltas: number[] }

/** V8's frame for a thread with nothing to run, and a worker blocked in poll(2) (src/net/libc.ts). */
const isIdle = (f: CallFrame): boolean => f.functionName === '(idle)' || (f.functionName === 'wait' && f.url.endsWith('/net/libc.js'));

function where(f: CallFrame): string {
  const file = f.url === '' ? '' : f.url.split('/').slice(-2).join('/');
  return file === '' ? '' : `${file}:${f.lineNumber + 1}`;
}

function summarize(path: string, top: number): { activeMs: number; totalMs: number; text: string } {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  let idle = 0;
  p.samples.forEach((id, i) => {
    const f = frames.get(id)!;
    const us = p.timeDeltas[i]!;
    total += us;
    if (isIdle(f)) {
      idle += us;
      return;
    }
    const name = `${f.functionName || '(anonymous)'} ${where(f)}`.trim();
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const file = f.url === '' ? f.functionName : f.url.split('/').slice(-2).join('/');
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  });
  const active = total - idle;
  const pct = (us: number): string => `${(100 * us / Math.max(active, 1)).toFixed(1).padStart(5)}%`;
  const list = (m: Map<string, number>): string[] => [...m].sort((x, y) => y[1] - x[1]).slice(0, top).map(([k, us]) => `  ${pct(us)}  ${k}`);
  const text = [
    `${(total / 1e3).toFixed(0)} ms sampled, ${(active / 1e3).toFixed(0)} ms busy (${(100 * active / Math.max(total, 1)).toFixed(0)}%, the rest idle or in poll); shares of busy time:`,
    ' by function (self):', ...list(byFunction),
    ' by file (self):', ...list(byFile),
  ].join('\n');
  return { activeMs: active / 1e3, totalMs: total / 1e3, text };
}

function main(): void {
  const dir = process.argv[2];
  if (dir === undefined || !existsSync(dir)) throw new Error('usage: cpuprofile.js DIR [--top N]');
  const top = numberArg('--top', 15);
  const minBusyMs = numberArg('--min-busy-ms', 1000);
  const pidsFile = join(dir, 'pids.json');
  const roles = existsSync(pidsFile) ? JSON.parse(readFileSync(pidsFile, 'utf8')) as Record<string, string> : {};
  // By process, then thread in start order.
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => {
    const [, , , pid, thread] = f.split('.');
    return { f, pid: pid!, thread: Number(thread) };
  }).sort((x, y) => x.pid.localeCompare(y.pid) || x.thread - y.thread);
  if (files.length === 0) throw new Error(`no .cpuprofile files in ${dir}`);
  for (const { f, pid, thread } of files) {
    const { activeMs, totalMs, text } = summarize(join(dir, f), top);
    const who = `${roles[pid] ?? `pid ${pid}`}, ${thread === 0 ? 'main thread' : `worker thread ${thread}`}`;
    // Start-up (module loading, tables) costs each thread a few hundred ms: below --min-busy-ms
    // (a second) busy, a thread did little else (a main thread, a worker replaced by a port change).
    if (activeMs < minBusyMs) console.log(`== ${who}: ${activeMs.toFixed(0)} ms busy of ${totalMs.toFixed(0)} ms\n`);
    else console.log(`== ${who} (${f})\n${text}\n`);
  }
}

main();
