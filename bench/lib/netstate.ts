// What containers on a network leave on the host when their engine does not clean up after
// them: network namespaces, ports on a bridge (the host ends of veths), host-local leases
// (one file per address) and iptables rules. The synchronous reads are cheap enough for
// an untimed check after every sample; iptables is read at set-up and teardown only.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, runOk } from './proc.ts';

// Where `ip netns` (berth, podman, the CNI tools) keeps named namespaces.
export const NETNS_DIR = '/run/netns';

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

export const netnsNames = (): string[] => list(NETNS_DIR);

export const linkExists = (name: string): boolean => existsSync(join('/sys/class/net', name));

// Interfaces enslaved to a bridge; none if it does not exist.
export const bridgePorts = (bridge: string): string[] =>
  list(join('/sys/class/net', bridge, 'brif'));

// Addresses host-local holds in a data directory (a network's: DIR/<network name>).
export const leases = (dir: string): string[] =>
  list(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));

// Makes a Linux bridge with this address (CIDR) and brings it up; removes it again if any
// step fails.
export async function createBridge(name: string, address: string): Promise<void> {
  await runOk('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
  try {
    await runOk('ip', ['addr', 'add', address, 'dev', name]);
    await runOk('ip', ['link', 'set', name, 'up']);
  } catch (e) {
    await run('ip', ['link', 'delete', name]);
    throw e;
  }
}

// Deletes a link unless it has ports (they are reported, and it stays); returns what
// is left.
export async function deleteBridge(name: string): Promise<string[]> {
  if (!linkExists(name)) return [];
  const ports = bridgePorts(name);
  if (ports.length > 0) return [`bridge ${name} kept: ports ${ports.join(', ')} still on it`];
  const r = await run('ip', ['link', 'delete', name]);
  return r.code === 0 || !linkExists(name) ? [] : [`bridge ${name}: ${r.stderr.trim()}`];
}

// Whether any address of the host is in this /24 (given as its first three octets).
export async function prefixInUse(prefix24: string): Promise<boolean> {
  const r = await runOk('ip', ['-4', '-o', 'addr', 'show'], { stdout: 'all' });
  return r.stdout.includes(` ${prefix24}.`);
}

// iptables-save of every table, without its comments and packet counters, so two reads
// compare; undefined without iptables-save.
export async function iptablesLines(): Promise<string[] | undefined> {
  const r = await run('iptables-save', [], { stdout: 'all' }).catch(() => undefined);
  if (r?.code !== 0) return undefined;
  return r.stdout
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''));
}

// Lines in `after` that `before` did not have (as a multiset: a rule added twice counts).
export function addedLines(before: readonly string[], after: readonly string[]): string[] {
  const seen = new Map<string, number>();
  for (const l of before) seen.set(l, (seen.get(l) ?? 0) + 1);
  const out: string[] = [];
  for (const l of after) {
    const n = seen.get(l) ?? 0;
    if (n > 0) seen.set(l, n - 1);
    else out.push(l);
  }
  return out;
}
