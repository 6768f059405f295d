// Server mode as a user meets it: `wireguard-ts up` from a fresh state directory in one
// namespace, `add-client alice`, and alice's printed configuration used as is by wg-quick with
// Debian's wireguard-go in a second namespace (wg-quick's policy routing for 0.0.0.0/0
// included) reaches the server's tunnel address; `up` again is harmless; `down` + `up` keeps
// the server key and its clients; a removed client is cut off at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, SOCKET_DIR, ensureTools, isRoot, sh, tryRun, uniqueName } from './harness.js';
import { BIN, createLink, ping } from './topology.js';

const skip = isRoot ? false : 'needs root for network namespaces and TUN devices';
const SERVER = '10.8.0.1';
const WG_QUICK_ENV = { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };

test('up, add-client alice, her printed config with wg-quick reaches 10.8.0.1; restart keeps key and clients', { skip, timeout: 120_000 }, async () => {
  const cleanup = new Cleanup();
  try {
    ensureTools();
    const { nsA, nsB, outerA } = createLink(cleanup);
    const state = mkdtempSync(join(tmpdir(), 'wgts-state-'));
    cleanup.add(() => rmSync(state, { recursive: true, force: true }));
    const ifname = uniqueName('wgsv');
    const port = 41820;
    const common = ['--interface', ifname, '--state-dir', state];
    const cli = (...args: string[]): string => sh('ip', ['netns', 'exec', nsA, process.execPath, BIN, ...args, ...common]);
    cleanup.add(() => void tryRun('ip', ['netns', 'exec', nsA, process.execPath, BIN, 'down', ...common]));

    const first = cli('up', '--endpoint', outerA, '--port', String(port));
    const serverKey = /public key\s+(\S+)/.exec(first)?.[1];
    assert.ok(serverKey, first);
    assert.match(first, new RegExp(`endpoint\\s+${outerA}:${port}\\n`));
    assert.match(first, /First client "client1", address 10\.8\.0\.2\./);
    assert.equal(sh('ip', ['netns', 'exec', nsA, 'wg', 'show', ifname, 'public-key']).trim(), serverKey, 'wg sees the same key');
    assert.match(sh('ip', ['-n', nsA, '-4', 'addr', 'show', 'dev', ifname]), /inet 10\.8\.0\.1\/24 .*\n[\s\S]*/);
    assert.match(sh('ip', ['-n', nsA, 'link', 'show', 'dev', ifname]), /mtu 1420 .*state (UNKNOWN|UP)/);
    const conf = join(state, `${ifname}.conf`);
    assert.equal(statSync(state).mode & 0o777, 0o700, 'state directory 0700');
    assert.equal(statSync(conf).mode & 0o777, 0o600, 'configuration 0600');
    assert.equal(statSync(join(state, `${ifname}.db`)).mode & 0o777, 0o600, 'store 0600');
    assert.equal(tryRun('wg-quick', ['strip', conf]).status, 0, 'wg-quick reads the server file');

    // The client: the printed configuration, byte for byte, in a file named after its interface.
    const alice = cli('add-client', 'alice');
    assert.match(alice, /^\[Interface\]\nPrivateKey = \S{44}\nAddress = 10\.8\.0\.3\/32\n\n\[Peer\]\n/);
    assert.match(alice, new RegExp(`\\nPublicKey = ${serverKey.replace(/[+/]/g, '\\$&')}\\n[\\s\\S]*Endpoint = ${outerA}:${port}\\nAllowedIPs = 0\\.0\\.0\\.0/0, ::/0\\n`));
    assert.equal(cli('show-client', 'alice'), alice, 'show-client prints the same configuration again');
    const clientFile = join(state, `${uniqueName('wgcl')}.conf`);
    writeFileSync(clientFile, alice, { mode: 0o600 });
    const wgQuick = (verb: 'up' | 'down'): string => sh('ip', ['netns', 'exec', nsB, 'wg-quick', verb, clientFile], { env: WG_QUICK_ENV });
    wgQuick('up');
    cleanup.add(() => void wgQuick('down'));
    assert.ok(ping({ ns: nsB }, SERVER), 'alice reaches the server through the tunnel');

    const list = cli('list-clients');
    assert.match(list, /^client1\s+10\.8\.0\.2\s+\S{44}\s+never\s+0 B\s+0 B\s+active$/m);
    assert.match(list, /^alice\s+10\.8\.0\.3\s+\S{44}\s+\d+ s ago\s+[\d.]+ (B|KiB)\s+[\d.]+ (B|KiB)\s+active$/m);
    const dup = tryRun('ip', ['netns', 'exec', nsA, process.execPath, BIN, 'add-client', 'alice', ...common]);
    assert.equal(dup.status, 1);
    assert.match(dup.out, /^wireguard-ts: a client named alice already exists/m);

    // `up` again (npm start twice): reported, nothing restarted, alice's session untouched.
    const again = cli('up');
    assert.match(again, new RegExp(`^${ifname} was already up\\n`));
    assert.doesNotMatch(again, /First client/);
    assert.ok(ping({ ns: nsB }, SERVER), 'still reachable after a second up');

    // Restart: same key, same clients, from the state directory alone.
    assert.equal(cli('down'), `${ifname} is down\n`);
    assert.equal(tryRun('ip', ['-n', nsA, 'link', 'show', 'dev', ifname]).status, 1, 'interface gone');
    assert.equal(existsSync(`${SOCKET_DIR}/${ifname}.sock`), false, 'socket gone');
    assert.equal(cli('down'), `${ifname} is not up\n`);
    const restarted = cli('up');
    assert.match(restarted, new RegExp(`^${ifname} is up\\n  public key  ${serverKey.replace(/[+/]/g, '\\$&')}\\n`));
    assert.match(restarted, /clients\s+client1, alice\n/);
    // wg-quick down/up on the client starts a fresh handshake at once, instead of waiting out
    // the ~15 s after which a client whose packets go unanswered re-handshakes by itself.
    wgQuick('down');
    wgQuick('up');
    assert.ok(ping({ ns: nsB }, SERVER), 'alice reaches the restarted server');
    assert.match(cli('list-clients'), /^alice\s+10\.8\.0\.3\s+\S{44}\s+\d+ s ago/m);

    // remove-client is live: alice's next packets find no peer.
    cli('remove-client', 'alice');
    assert.equal(ping({ ns: nsB }, SERVER, ['-c', '2', '-W', '1']), false, 'a removed client is cut off');
    assert.doesNotMatch(cli('list-clients'), /^alice/m);
  } finally {
    await cleanup.run();
  }
});

test('up --nat: forwarding on and the subnet masqueraded (said by up), all undone by down', { skip, timeout: 60_000 }, async () => {
  const cleanup = new Cleanup();
  try {
    ensureTools();
    const { nsA } = createLink(cleanup);
    const state = mkdtempSync(join(tmpdir(), 'wgts-state-'));
    cleanup.add(() => rmSync(state, { recursive: true, force: true }));
    const ifname = uniqueName('wgnat');
    const common = ['--interface', ifname, '--state-dir', state];
    const run = (...args: string[]): { status: number; out: string } => tryRun('ip', ['netns', 'exec', nsA, process.execPath, BIN, ...args, ...common]);
    cleanup.add(() => void run('down'));
    const inNs = (...args: string[]): string => sh('ip', ['netns', 'exec', nsA, ...args]);
    assert.equal(inNs('cat', '/proc/sys/net/ipv4/ip_forward').trim(), '0');
    const up = run('up', '--nat', '--endpoint', '10.99.0.1');
    assert.equal(up.status, 0, up.out);
    assert.match(up.out, /NAT: IPv4 forwarding on \(was off\), 10\.8\.0\.0\/24 masqueraded out of every other interface/);
    assert.equal(inNs('cat', '/proc/sys/net/ipv4/ip_forward').trim(), '1');
    const rules = tryRun('ip', ['netns', 'exec', nsA, 'nft', 'list', 'ruleset']).out + tryRun('ip', ['netns', 'exec', nsA, 'iptables-save']).out;
    assert.match(rules, /10\.8\.0\.0\/24.*masquerade|MASQUERADE/i);
    assert.equal(run('down').status, 0);
    assert.equal(inNs('cat', '/proc/sys/net/ipv4/ip_forward').trim(), '0', 'forwarding back as it was');
    const after = tryRun('ip', ['netns', 'exec', nsA, 'nft', 'list', 'ruleset']).out + tryRun('ip', ['netns', 'exec', nsA, 'iptables-save']).out;
    assert.doesNotMatch(after, /wireguard_ts|wireguard-ts/);
  } finally {
    await cleanup.run();
  }
});
