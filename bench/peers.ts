// Many peers through `wg setconf`: wireguard-ts next to wireguard-go on the same file in the same
// run, each daemon fresh in a namespace of its own. Per implementation and peer count: the wall
// time of `wg setconf` and of `wg show IF dump`, and the resident memory the peers add (VmRSS
// after the setconf minus before it, per peer). Each peer has a private key to precompute
// against and two allowed IPs (an IPv4 /32 and an IPv6 /128), as in test/interop/scale.test.ts.
//
//   node dist/bench/peers.js [--peers 10000,50000]
import { performance } from 'node:perf_hooks';
import { Cleanup, createNetns, keyFile, numberedPeers, rssKb, sh, uniqueName, waitFor, wgConfig, wgKeyPair } from '../test/interop/harness.js';
import { startDaemon, type Impl } from '../test/interop/topology.js';
import { listArg, loadNow, printTable, ratio, requireRoot } from './pairings.js';

interface Result { setconfS: number; dumpS: number; rssBeforeKb: number; rssAfterKb: number }

function timed(run: () => string): { s: number; out: string } {
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
  }, 10_000);
}

async function measure(impl: Impl, file: string, peers: number): Promise<Result> {
  const cleanup = new Cleanup();
  try {
    const ifname = uniqueName(impl === 'ours' ? 'wgts' : 'wggo');
    // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
    const { proc } = await startDaemon(cleanup, impl, createNetns(cleanup), ifname);
    const rssBeforeKb = await settledRss(proc.pid!);
    const setconf = timed(() => sh('wg', ['setconf', ifname, file]));
    const rssAfterKb = rssKb(proc.pid!);
    const dump = timed(() => sh('wg', ['show', ifname, 'dump']));
    const listed = dump.out.trimEnd().split('\n').length - 1;
    if (listed !== peers) throw new Error(`${impl} lists ${listed} peers of ${peers}`);
    return { setconfS: setconf.s, dumpS: dump.s, rssBeforeKb, rssAfterKb };
  } finally {
    await cleanup.run();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const load = loadNow();
  const rows: string[][] = [];
  for (const n of listArg('--peers', ['10000', '50000']).map(Number)) {
    const file = keyFile(wgConfig({ privateKey: wgKeyPair().privateKey, listenPort: 51820, peers: numberedPeers(n) }));
    const go = await measure('wggo', file, n);
    const ours = await measure('ours', file, n);
    for (const [impl, r] of [['wireguard-go', go], ['wireguard-ts', ours]] as const) {
      const kbPerPeer = (r.rssAfterKb - r.rssBeforeKb) / n;
      process.stderr.write(`${impl} ${n} peers: setconf ${r.setconfS.toFixed(2)} s, dump ${r.dumpS.toFixed(2)} s, ${kbPerPeer.toFixed(1)} KB/peer\n`);
      rows.push([
        impl, String(n), r.setconfS.toFixed(2), ratio(r.setconfS, go.setconfS), r.dumpS.toFixed(2), ratio(r.dumpS, go.dumpS),
        (r.rssBeforeKb / 1024).toFixed(0), (r.rssAfterKb / 1024).toFixed(0), kbPerPeer.toFixed(1), ratio(kbPerPeer, (go.rssAfterKb - go.rssBeforeKb) / n),
      ]);
    }
  }
  printTable('wg setconf of N peers (2 allowed IPs each) on a fresh daemon, then wg show dump', load,
    ['implementation', 'peers', 'setconf s', 'vs wggo', 'show dump s', 'vs wggo', 'RSS before MB', 'RSS after MB', 'KB/peer', 'vs wggo'], rows);
}

await main();
