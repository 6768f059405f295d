// Many peers through `wg setconf`: wireguard-ts next to wireguard-go on the same file in the same
// run, each daemon fresh in a namespace of its own. Per implementation and peer count: the wall
// time of `wg setconf` and of `wg show IF dump`, and the resident memory the peers add (VmRSS
// once settled after the setconf minus before it, per peer). Each peer has two allowed IPs (an IPv4 /32 and an
// IPv6 /128, as in test/interop/scale.test.ts), or one /32 with --ips 1.
//
// wireguard-go keeps at most 65,536 peers: above that its row shows how many it kept, and its
// setconf fails (the `wg` error is reported, not thrown). Our daemon gets --max-peers N.
//
//   node dist/bench/peers.js [--peers 10000,50000] [--ips 1|2]
//   node dist/bench/peers.js --peers 10000,100000,1000000 --ips 1   (the issue's three sizes)
import { performance } from 'node:perf_hooks';
import { Cleanup, keyFile, numberedPeers, rssKb, sh, tryRun, waitFor, wgConfig, wgKeyPair } from '../test/interop/harness.js';
import { startDaemonAlone, type Impl } from '../test/interop/topology.js';
import { listArg, loadNow, numberArg, printTable, ratio, requireRoot } from './pairings.js';

interface Result { setconfS: number; dumpS: number; rssBeforeKb: number; rssAfterKb: number; kept: number; error?: string }

function timed<T>(run: () => T): { s: number; out: T } {
  const t0 = performance.now();
  const out = run();
  return { s: (performance.now() - t0) / 1000, out };
}

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

async function measure(impl: Impl, file: string, peers: number): Promise<Result> {
  const cleanup = new Cleanup();
  try {
    // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
    const { ifname, proc } = await startDaemonAlone(cleanup, impl, impl === 'ours' ? ['--max-peers', String(Math.max(peers, 65536))] : []);
    const rssBeforeKb = await settledRss(proc.pid!);
    const setconf = timed(() => tryRun('wg', ['setconf', ifname, file]));
    // Settled, as before: right after a big setconf the heap still holds the parse's garbage.
    const rssAfterKb = await settledRss(proc.pid!);
    const dump = timed(() => sh('wg', ['show', ifname, 'dump']));
    const kept = dump.out.trimEnd().split('\n').length - 1;
    const error = setconf.out.status === 0 ? undefined : setconf.out.out.trim();
    if (impl === 'ours' && (error !== undefined || kept !== peers)) throw new Error(`${impl} keeps ${kept} peers of ${peers}: ${error ?? ''}`);
    return { setconfS: setconf.s, dumpS: dump.s, rssBeforeKb, rssAfterKb, kept, error };
  } finally {
    await cleanup.run();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const rows: string[][] = [];
  const ips = numberArg('--ips', 2);
  if (ips !== 1 && ips !== 2) throw new Error('--ips takes 1 or 2');
  for (const n of listArg('--peers', ['10000', '50000']).map(Number)) {
    const peers = numberedPeers(n);
    if (ips === 1) for (const p of peers) p.allowedIps?.splice(1);
    const file = keyFile(wgConfig({ privateKey: wgKeyPair().privateKey, listenPort: 51820, peers }));
    const go = await measure('wggo', file, n);
    const ours = await measure('ours', file, n);
    // Memory per peer it actually kept: wireguard-go's cap would otherwise flatter it.
    const kb = (r: Result): number => (r.rssAfterKb - r.rssBeforeKb) / Math.max(r.kept, 1);
    for (const [impl, r] of [['wireguard-go', go], ['wireguard-ts', ours]] as const) {
      process.stderr.write(`${impl} ${n} peers: kept ${r.kept}, setconf ${r.setconfS.toFixed(2)} s, dump ${r.dumpS.toFixed(2)} s, ${kb(r).toFixed(1)} KB/peer${r.error ? ` (wg: ${r.error})` : ''}\n`);
      rows.push([
        impl, String(n), String(r.kept), r.setconfS.toFixed(2), ratio(r.setconfS, go.setconfS), r.dumpS.toFixed(2), ratio(r.dumpS, go.dumpS),
        (r.rssBeforeKb / 1024).toFixed(0), (r.rssAfterKb / 1024).toFixed(0), kb(r).toFixed(1), ratio(kb(r), kb(go)),
      ]);
    }
  }
  printTable(`wg setconf of N peers (${ips} allowed IP${ips > 1 ? 's' : ''} each) on a fresh daemon, then wg show dump`, load,
    ['implementation', 'peers', 'kept', 'setconf s', 'vs wggo', 'show dump s', 'vs wggo', 'RSS before MB', 'RSS after MB', 'KB/peer', 'vs wggo'], rows);
}

await main();
