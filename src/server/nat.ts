// `up --nat`: IPv4 forwarding on, and MASQUERADE for the client subnet leaving through any
// other interface (plus FORWARD accepts, for hosts whose forward policy is drop), with nft when
// the host has it, iptables otherwise. What was done is kept in the store so that `down` (even
// after a kill -9, or without the flag) undoes exactly that, and the forwarding sysctl goes back
// to what it was.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { ServerError } from './state.js';

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

export interface NatState {
  tool: 'nft' | 'iptables';
  ifname: string;
  subnet: string;
  /** The sysctl's value before `up`, restored by `down`. */
  forwardingBefore: string;
}

const has = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

function run(cmd: string, args: string[], input?: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.error) throw new ServerError(`--nat: cannot run ${cmd}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
  if (r.status !== 0) throw new ServerError(`--nat: ${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit status ${r.status}`}`);
}

const table = (ifname: string): string => `wireguard_ts_${ifname.replace(/[^A-Za-z0-9_]/g, '_')}`;

function iptablesRules(s: NatState): string[][] {
  const tag = ['-m', 'comment', '--comment', `wireguard-ts ${s.ifname}`];
  return [
    ['-t', 'nat', 'POSTROUTING', '-s', s.subnet, '!', '-o', s.ifname, '-j', 'MASQUERADE', ...tag],
    ['-t', 'filter', 'FORWARD', '-i', s.ifname, '-j', 'ACCEPT', ...tag],
    ['-t', 'filter', 'FORWARD', '-o', s.ifname, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT', ...tag],
  ];
}

/** Turns NAT on; returns what was done and the lines `up` prints about it. */
export function enableNat(ifname: string, subnet: string): { state: NatState; said: string[] } {
  const state: NatState = { tool: has('nft') ? 'nft' : has('iptables') ? 'iptables' : fail(), ifname, subnet, forwardingBefore: readFileSync(IP_FORWARD, 'utf8').trim() };
  if (state.tool === 'nft') {
    const t = table(ifname);
    run('nft', ['-f', '-'], [
      `table ip ${t} {`,
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ip saddr ${subnet} oifname != "${ifname}" masquerade`,
      '  }',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname "${ifname}" accept`,
      `    oifname "${ifname}" ct state related,established accept`,
      '  }',
      '}',
    ].join('\n') + '\n');
  } else {
    for (const [, tbl, chain, ...rule] of iptablesRules(state)) run('iptables', ['-t', tbl!, '-A', chain!, ...rule]);
  }
  writeFileSync(IP_FORWARD, '1\n');
  const rules = state.tool === 'nft' ? `nft table ip ${table(ifname)}` : 'iptables rules tagged "wireguard-ts ' + ifname + '"';
  return {
    state,
    said: [`NAT: IPv4 forwarding on (was ${state.forwardingBefore === '1' ? 'on' : 'off'}), ${subnet} masqueraded out of every other interface (${rules}); \`down\` removes it`],
  };
}

function fail(): never {
  throw new ServerError('--nat needs nft or iptables (apt-get install nftables)');
}

/** Undoes `enableNat`; errors are reported, not thrown: `down` must finish. */
export function disableNat(s: NatState): string[] {
  const problems: string[] = [];
  const attempt = (cmd: string, args: string[]): void => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) problems.push(`${cmd} ${args.join(' ')}: ${r.stderr?.trim() || r.error?.message || 'failed'}`);
  };
  if (s.tool === 'nft') attempt('nft', ['delete', 'table', 'ip', table(s.ifname)]);
  else for (const [, tbl, chain, ...rule] of iptablesRules(s)) attempt('iptables', ['-t', tbl!, '-D', chain!, ...rule]);
  try {
    writeFileSync(IP_FORWARD, `${s.forwardingBefore}\n`);
  } catch (err) {
    problems.push(`cannot restore ${IP_FORWARD}: ${(err as Error).message}`);
  }
  return problems;
}
