// Many peers through `wg setconf`: wireguard-ts next to wireguard-go on the same peers in the
// same run, each daemon fresh. Per implementation and peer count:
//   - the wall time of `wg setconf` (the whole request: `wg` reading the file, the transfer,
//     the daemon's parse and apply), the CPU time the daemon spent meanwhile (all threads: on a
//     shared machine the steadier figure), the wall time of `wg show IF dump`, and of reading
//     the raw `get=1` reply off the socket (the daemon's share of the dump);
//   - the resident memory the peers add (VmRSS once settled after the setconf minus before it,
//     per peer kept);
//   - the handshake latency of a peer configured before the setconf, measured while it runs:
//     a bare peer in this process (test/interop/bare-peer.ts) sends an initiation 60 ms after
//     each answer (closer ones would be dropped as a flood) and times the response to the
//     datagram. It is the first peer of the file, so `replace_peers` removes and re-adds it at
//     the start of the apply and it stays configured through the rest (wireguard-go too).
// Each peer has one allowed IP (an IPv4 /32), or an IPv4 /32 and an IPv6 /128 with --ips 2.
//
// wireguard-go keeps at most 65,536 peers: above that its row shows how many it kept, and its
// setconf fails (the `wg` error is reported, not thrown). Our daemon gets --max-peers N.
//
//   node dist/bench/peers.js [--peers 100000,1000000] [--ips 1|2] [--impl wggo,ours]
// `--impl ours` skips wireguard-go: for an A/B of two builds of ours run in the same minute.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { performance } from 'node:perf_hooks';
import { Cleanup, keyFile, numberedPeers, peerSection, rssKb, sh, startWireguardGo, waitFor } from '../test/interop/harness.js';
import { BarePeer, startBareDaemon } from '../test/interop/bare-peer.js';
import { listArg, loadNow, numberArg, printTable, ratio, requireRoot } from './pairings.js';
import { socketPath } from '../src/uapi/server.js';

// The probes time handshakes in this process: a collection of its own garbage (the million-peer
// file it has just built and written) while the setconf runs counted as the daemon's latency
// (100-270 ms probes in the first 300 ms). It is collected before the setconf starts.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Initiations from one peer closer than 1/20 s apart are dropped as a flood (kernel INITIATIONS_PER_SECOND). */
const PROBE_SPACING_MS = 60;
/** A probe without an answer in this time counts as unanswered. */
const PROBE_TIMEOUT_MS = 1000;
const PROBE_ADDR = '10.255.255.1/32';
/** USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux architecture we run on. */
const CLOCK_TICKS = 100;

type Impl = 'ours' | 'wggo';

interface Probes { n: number; p50: number; p99: number; max: number; unanswered: number }
interface Result { setconfS: number; setconfCpuS: number; dumpS: number; getS: number; rssBeforeKb: number; rssAfterKb: number; kept: number; error?: string; idleMs: number; probes: Probes }

/** VmRSS once start-up is over (our workers load their modules after the socket is up): two samples 200 ms apart within 1%. */
async function settledRss(pid: number): Promise<number> {
  let last = rssKb(pid);
  return waitFor('the daemon\'s memory to settle', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const now = rssKb(pid);
    const settled = Math.abs(now - last) <= last / 100;
    last = now;
    return settled && now;
  }, 30_000);
}

/** CPU time (user + system, every thread) a process has used, in seconds. */
function cpuSeconds(pid: number): number {
  // Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/** Runs a command without blocking this event loop (the probes run meanwhile). */
function run(cmd: string, args: string[]): { done: Promise<{ status: number; out: string }> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  return { done: new Promise((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, out }))) };
}

/**
 * Seconds to read a whole `get=1` reply off the UAPI socket without parsing it: the daemon's
 * share of `wg show dump`, the rest being `wg` parsing and printing.
 */
function timeRawGet(ifname: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const sock = createConnection(socketPath(ifname));
    let tail = '';
    sock.on('data', (b: Buffer) => {
      tail = (tail + b.toString('latin1')).slice(-9);
      if (tail.endsWith('errno=0\n\n')) {
        resolve((performance.now() - t0) / 1000);
        sock.destroy();
      }
    });
    sock.on('error', reject);
    sock.on('close', () => reject(new Error(`the get reply of ${ifname} ended early`)));
    sock.write('get=1\n\n');
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(impl: Impl, sections: string, peers: number): Promise<Result> {
  const cleanup = new Cleanup();
  try {
    let ifname: string, pid: number, port: number, privateKey: string, publicKey: Uint8Array;
    if (impl === 'ours') {
      const d = await startBareDaemon(cleanup, '10.254.0.1/16', ['--max-peers', String(Math.max(peers, 65536))]);
      ({ ifname, pid, port, privateKey, publicKey } = d);
    } else {
      const g = await startWireguardGo(cleanup);
      ifname = g.ifname;
      pid = g.proc.pid!;
      privateKey = sh('wg', ['genkey']).trim();
      g.set('private-key', keyFile(privateKey), 'listen-port', '0');
      port = g.listenPort();
      publicKey = Uint8Array.from(Buffer.from(g.publicKey(), 'base64'));
    }
    const rssBeforeKb = await settledRss(pid);
    const probe = new BarePeer(publicKey, cleanup);
    await probe.bind();
    sh('wg', ['set', ifname, 'peer', probe.publicKeyB64, 'allowed-ips', PROBE_ADDR, 'endpoint', probe.endpoint]);
    // The reference: the same probe on the idle daemon, median of 5.
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) {
      const ms = await probe.probeHandshake(port);
      if (ms === undefined) throw new Error(`${impl}: no handshake before the setconf`);
      idle.push(ms);
      await new Promise((r) => setTimeout(r, PROBE_SPACING_MS));
    }
    const idleMs = idle.sort((a, b) => a - b)[2]!;

    const head = `[Interface]\nPrivateKey = ${privateKey}\nListenPort = ${port}\n\n`
      + `${peerSection({ publicKey: probe.publicKeyB64, allowedIps: [PROBE_ADDR], endpoint: probe.endpoint })}\n`;
    const file = keyFile(head + sections);
    collectGarbage();
    const t0 = performance.now();
    const cpu0 = cpuSeconds(pid);
    const setconf = run('wg', ['setconf', ifname, file]);
    let setconfS = NaN;
    let setconfCpuS = NaN;
    const finished = setconf.done.then((r) => {
      setconfS = (performance.now() - t0) / 1000;
      setconfCpuS = cpuSeconds(pid) - cpu0;
      return r;
    });
    const times: number[] = [];
    let unanswered = 0;
    while (Number.isNaN(setconfS)) {
      const ms = await probe.probeHandshake(port, PROBE_TIMEOUT_MS);
      if (Number.isNaN(setconfS)) {
        if (ms === undefined) unanswered++;
        else times.push(ms);
      }
      await Promise.race([finished, new Promise((r) => setTimeout(r, PROBE_SPACING_MS))]);
    }
    const out = await finished;
    times.sort((a, b) => a - b);
    const probes = { n: times.length, p50: quantile(times, 0.5), p99: quantile(times, 0.99), max: times.at(-1) ?? NaN, unanswered };

    // Settled, as before: right after a big setconf the heap still holds the parse's garbage.
    const rssAfterKb = await settledRss(pid);
    const t1 = performance.now();
    const dump = sh('wg', ['show', ifname, 'dump']);
    const dumpS = (performance.now() - t1) / 1000;
    const kept = dump.trimEnd().split('\n').length - 1;
    const getS = await timeRawGet(ifname);
    const error = out.status === 0 ? undefined : out.out.trim();
    if (impl === 'ours' && (error !== undefined || kept !== peers)) throw new Error(`${impl} keeps ${kept} peers of ${peers}: ${error ?? ''}`);
    return { setconfS, setconfCpuS, dumpS, getS, rssBeforeKb, rssAfterKb, kept, error, idleMs, probes };
  } finally {
    await cleanup.run();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const rows: string[][] = [];
  const ips = numberArg('--ips', 1);
  if (ips !== 1 && ips !== 2) throw new Error('--ips takes 1 or 2');
  const impls = listArg('--impl', ['wggo', 'ours']);
  if (impls.some((i) => i !== 'wggo' && i !== 'ours')) throw new Error('--impl takes wggo, ours or both');
  for (const n of listArg('--peers', ['100000', '1000000']).map(Number)) {
    // The probe is the file's first peer; these are the others.
    const others = numberedPeers(n - 1);
    if (ips === 1) for (const p of others) p.allowedIps?.splice(1);
    const sections = others.map(peerSection).join('\n');
    const go = impls.includes('wggo') ? await measure('wggo', sections, n) : undefined;
    const ours = impls.includes('ours') ? await measure('ours', sections, n) : undefined;
    // Memory per peer it actually kept: wireguard-go's cap would otherwise flatter it.
    const kb = (r: Result): number => (r.rssAfterKb - r.rssBeforeKb) / Math.max(r.kept, 1);
    const ms = (v: number): string => (Number.isNaN(v) ? '-' : v.toFixed(1));
    for (const [impl, r] of [['wireguard-go', go], ['wireguard-ts', ours]] as const) {
      if (r === undefined) continue;
      const p = r.probes;
      process.stderr.write(`${impl} ${n} peers: kept ${r.kept}, setconf ${r.setconfS.toFixed(2)} s, dump ${r.dumpS.toFixed(2)} s, `
        + `${kb(r).toFixed(2)} KB/peer, handshakes during setconf ${p.n} (p50 ${ms(p.p50)} ms, max ${ms(p.max)} ms, ${p.unanswered} unanswered)`
        + `${r.error ? ` (wg: ${r.error.slice(0, 200)})` : ''}\n`);
      rows.push([
        impl, String(n), String(r.kept), r.setconfS.toFixed(2), ratio(r.setconfS, go?.setconfS), r.setconfCpuS.toFixed(2), r.dumpS.toFixed(2), ratio(r.dumpS, go?.dumpS), r.getS.toFixed(2),
        (r.rssBeforeKb / 1024).toFixed(0), (r.rssAfterKb / 1024).toFixed(0), kb(r).toFixed(2),
        ms(r.idleMs), String(p.n), ms(p.p50), ms(p.p99), ms(p.max), String(p.unanswered),
      ]);
    }
  }
  printTable(`wg setconf of N peers (${ips} allowed IP${ips > 1 ? 's' : ''} each) on a fresh daemon, then wg show dump; `
    + `handshakes of a peer configured before, probed every ${PROBE_SPACING_MS} ms during the setconf`, load,
  ['implementation', 'peers', 'kept', 'setconf s', 'vs wggo', 'daemon CPU s in setconf', 'show dump s', 'vs wggo', 'raw get s', 'RSS before MB', 'RSS after MB', 'KB/peer',
    'handshake idle ms', 'handshakes during setconf', 'p50 ms', 'p99 ms', 'max ms', `unanswered (${PROBE_TIMEOUT_MS} ms)`], rows);
}

await main();
