// The host side of container networking that is not CNI's: named network namespaces
// (`ip netns`, bind mounts under /run/netns that hold a namespace with no process in it),
// host links, the host's routes, and berth's one firewall rule of its own.
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isBerthError } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';

// Where `ip netns` keeps its names; fixed in iproute2 at build time.
export const NETNS_DIR = '/run/netns';

const IP = 'ip';
const IPTABLES = 'iptables';

export function netnsPathOf(name: string, dir = NETNS_DIR): string {
  return join(dir, name);
}

export function netnsExists(name: string, dir = NETNS_DIR): boolean {
  return existsSync(netnsPathOf(name, dir));
}

export async function listNetns(dir = NETNS_DIR): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

// Makes the namespace and returns its path; one of that name must not exist.
export async function createNetns(name: string, dir = NETNS_DIR): Promise<string> {
  await execFile([IP, 'netns', 'add', name], { timeoutMs: 30_000 });
  return netnsPathOf(name, dir);
}

// Unmounts and deletes the name; the namespace itself goes when nothing else holds it
// (a container's process keeps it alive). A missing name is no error.
export async function deleteNetns(name: string, dir = NETNS_DIR): Promise<void> {
  if (!netnsExists(name, dir)) return;
  try {
    await execFile([IP, 'netns', 'delete', name], { timeoutMs: 30_000 });
  } catch (e) {
    if (!netnsExists(name, dir)) return;
    throw e;
  }
}

export function linkExists(name: string, sys = '/sys'): boolean {
  return existsSync(join(sys, 'class', 'net', name));
}

export async function listLinks(sys = '/sys'): Promise<string[]> {
  return (await readdir(join(sys, 'class', 'net'))).sort();
}

// The interfaces enslaved to a bridge (none if it is gone).
export async function bridgePorts(bridge: string, sys = '/sys'): Promise<string[]> {
  try {
    return (await readdir(join(sys, 'class', 'net', bridge, 'brif'))).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

// A missing link is no error.
export async function deleteLink(name: string, sys = '/sys'): Promise<void> {
  if (!linkExists(name, sys)) return;
  try {
    await execFile([IP, 'link', 'delete', name], { timeoutMs: 30_000 });
  } catch (e) {
    if (!linkExists(name, sys)) return;
    throw e;
  }
}

export interface HostRoute {
  readonly iface: string;
  // IPv4 CIDR of the destination.
  readonly dst: string;
}

const hexToIPv4 = (h: string): string => {
  // /proc/net/route prints addresses in host (little-endian) byte order.
  const n = parseInt(h, 16) >>> 0;
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
};

const maskBits = (h: string): number => {
  let n = parseInt(h, 16) >>> 0;
  let bits = 0;
  while (n) {
    bits += n & 1;
    n >>>= 1;
  }
  return bits;
};

// The main table's IPv4 routes but the default ones, from /proc/net/route's text.
export function parseProcRoutes(text: string): HostRoute[] {
  const out: HostRoute[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [iface, dst, , , , , , mask] = f;
    if (iface === undefined || dst === undefined || mask === undefined) continue;
    const bits = maskBits(mask);
    if (bits === 0) continue;
    out.push({ iface, dst: `${hexToIPv4(dst)}/${bits}` });
  }
  return out;
}

export async function readHostRoutes(proc = '/proc'): Promise<HostRoute[]> {
  return parseProcRoutes(await readFile(join(proc, 'net', 'route'), 'utf8'));
}

// With FORWARD's policy at DROP (docker sets it so), the CNI firewall plugin lets a
// container's own connections out and their replies in, but not a connection from
// another host to a published port: that one is new, and only its DNAT says it is
// wanted. This rule accepts exactly those, per bridge, in the chain the firewall plugin
// keeps for the administrator's rules (CNI-ADMIN, jumped to from FORWARD).
const ADMIN_CHAIN = 'CNI-ADMIN';

export function publishedPortsRule(bridge: string): string[] {
  return [
    '-o',
    bridge,
    '-m',
    'conntrack',
    '--ctstate',
    'DNAT',
    '-m',
    'comment',
    '--comment',
    `berth published ports on ${bridge}`,
    '-j',
    'ACCEPT',
  ];
}

async function iptables(args: readonly string[], allowFailure = false): Promise<number> {
  const r = await execFile([IPTABLES, '-w', '10', ...args], { timeoutMs: 30_000, allowFailure });
  return r.code;
}

// One masquerade rule per network, as docker has, instead of the bridge plugin's chain per
// container (ipMasq), which cost each start and stop about fifteen iptables calls.
export function masqueradeRule(bridge: string, subnet: string): string[] {
  return [
    '-s',
    subnet,
    '!',
    '-o',
    bridge,
    '-m',
    'comment',
    '--comment',
    `berth masquerade ${bridge}`,
    '-j',
    'MASQUERADE',
  ];
}

// Idempotent. The chain exists once the firewall plugin has run; made here if not, which
// the plugin accepts. With a subnet, the network's masquerade rule too.
export async function ensurePublishedPortsRule(bridge: string, subnet?: string): Promise<void> {
  if (subnet !== undefined) {
    const m = masqueradeRule(bridge, subnet);
    if ((await iptables(['-t', 'nat', '-C', 'POSTROUTING', ...m], true)) !== 0)
      await iptables(['-t', 'nat', '-A', 'POSTROUTING', ...m]);
  }
  const rule = publishedPortsRule(bridge);
  if ((await iptables(['-C', ADMIN_CHAIN, ...rule], true)) === 0) return;
  if ((await iptables(['-n', '-L', ADMIN_CHAIN], true)) !== 0)
    await iptables(['-N', ADMIN_CHAIN], true);
  await iptables(['-A', ADMIN_CHAIN, ...rule]);
}

// The masquerade rules of a bridge, as `iptables -t nat -S POSTROUTING` prints them,
// turned back into arguments (only the comment is quoted).
export function parseMasqueradeRules(iptablesS: string, bridge: string): string[][] {
  const out: string[][] = [];
  for (const line of iptablesS.split('\n')) {
    if (!line.startsWith('-A POSTROUTING ') || !line.includes(`"berth masquerade ${bridge}"`))
      continue;
    const args: string[] = [];
    for (const m of line.slice('-A POSTROUTING '.length).matchAll(/"([^"]*)"|(\S+)/g))
      args.push(m[1] ?? m[2] ?? '');
    out.push(args);
  }
  return out;
}

// The bridges that have the rule (any berthd's): `iptables -S` prints each as it was
// added.
export function parsePublishedPortsRules(iptablesS: string): string[] {
  const out = new Set<string>();
  for (const m of iptablesS.matchAll(/^-A CNI-ADMIN -o (\S+) .*berth published ports on /gm))
    if (m[1]) out.add(m[1]);
  return [...out].sort();
}

export async function publishedPortsBridges(): Promise<string[]> {
  const r = await execFile([IPTABLES, '-w', '10', '-S', ADMIN_CHAIN], {
    timeoutMs: 30_000,
    allowFailure: true,
  });
  return r.code === 0 ? parsePublishedPortsRules(r.stdout) : [];
}

// Removes every copy (two berthds sharing a bridge may each have added one), and the
// bridge's masquerade rules.
export async function removePublishedPortsRule(bridge: string): Promise<void> {
  try {
    const nat = await execFile([IPTABLES, '-w', '10', '-t', 'nat', '-S', 'POSTROUTING'], {
      timeoutMs: 30_000,
      allowFailure: true,
    });
    for (const args of parseMasqueradeRules(nat.stdout, bridge))
      await iptables(['-t', 'nat', '-D', 'POSTROUTING', ...args], true);
  } catch (e) {
    if (!isBerthError(e, 'RUNTIME_FAILED')) throw e;
  }
  const rule = publishedPortsRule(bridge);
  for (let i = 0; i < 16; i++) {
    try {
      if ((await iptables(['-D', ADMIN_CHAIN, ...rule], true)) !== 0) return;
    } catch (e) {
      // No iptables at all: nothing of ours can be there.
      if (isBerthError(e, 'RUNTIME_FAILED')) return;
      throw e;
    }
  }
}
