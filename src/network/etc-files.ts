// /etc/hosts, /etc/hostname and /etc/resolv.conf for a container, written into its bundle
// and bound read-only. The container's hostname resolves in every mode: to its own
// address on a bridge, to the host's in host mode, to 127.0.0.1 without a network.
import { open, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { invalid } from '../util/errors.ts';

// 'container': another container's namespace; its address is the one to give as ip.
export type NetworkMode = 'none' | 'host' | 'bridge' | 'container';

export interface EtcFiles {
  readonly hosts: string;
  readonly hostname: string;
  readonly resolvConf: string;
}

// One /etc/hosts line.
export interface HostEntry {
  readonly ip: string;
  readonly names: readonly string[];
}

export interface HostsOptions {
  // The container's own address: its IP on the bridge (or the shared container's), the
  // host's advertised IP in host mode.
  readonly ip?: string;
  // More names for the own address: the container's name, network aliases.
  readonly aliases?: readonly string[];
  // --add-host, resolved (see resolveExtraHosts).
  readonly extraHosts?: readonly HostEntry[];
  // Other containers on the same user network.
  readonly peers?: readonly HostEntry[];
}

export interface ResolvOptions {
  // --dns: replaces the host's nameservers.
  readonly dns?: readonly string[];
  // --dns-search: replaces the host's search domains; ["."] means none (docker's).
  readonly dnsSearch?: readonly string[];
  // The file systemd-resolved keeps its upstream servers in, used when the host's own
  // resolv.conf names only its loopback stub.
  readonly upstreamResolv?: string;
}

// docker's fallback when the host has no nameserver a container can reach (Google's public
// DNS, as in docker's libnetwork/resolvconf).
export const FALLBACK_NAMESERVERS: readonly string[] = ['8.8.8.8', '8.8.4.4'];

export const SYSTEMD_RESOLVED_UPSTREAM = '/run/systemd/resolve/resolv.conf';

// A resolver on the host's loopback (systemd-resolved's 127.0.0.53, dnsmasq) is
// unreachable from a container with its own network namespace.
export function isLoopbackIP(ip: string): boolean {
  const bare = ip.replace(/%.*$/, '');
  return bare.startsWith('127.') || bare === '::1' || /^::ffff:127\./i.test(bare);
}

const NAMESERVER = /^\s*nameserver\s+(\S+)/;
const SEARCH = /^\s*(search|domain)\s/;

function nameservers(text: string): string[] {
  return text
    .split('\n')
    .map((l) => NAMESERVER.exec(l)?.[1])
    .filter((ns): ns is string => ns !== undefined);
}

// Loopback nameservers are dropped in the container's own network namespace, as docker
// does; when none is left, systemd-resolved's upstream servers stand in, else docker's
// fallback. --dns and --dns-search replace the host's lines of that kind; the rest
// (options, comments) is kept.
export function containerResolvConf(
  hostResolv: string,
  ownNetns: boolean,
  opts: ResolvOptions = {},
): string {
  const dns = opts.dns && opts.dns.length > 0 ? opts.dns : undefined;
  const search = opts.dnsSearch && opts.dnsSearch.length > 0 ? opts.dnsSearch : undefined;
  const reachable = (ns: string) => !ownNetns || !isLoopbackIP(ns);
  let lines = hostResolv.split('\n').filter((l) => {
    const ns = NAMESERVER.exec(l)?.[1];
    if (ns !== undefined) return dns === undefined && reachable(ns);
    return !(search !== undefined && SEARCH.test(l));
  });
  let servers = dns ? [...dns] : [];
  if (!dns && !lines.some((l) => NAMESERVER.test(l)) && ownNetns) {
    const upstream = nameservers(opts.upstreamResolv ?? '').filter(reachable);
    servers = upstream.length > 0 ? upstream : [...FALLBACK_NAMESERVERS];
  }
  if (search !== undefined) {
    const domains = search.filter((d) => d !== '.');
    if (domains.length > 0) lines = [`search ${domains.join(' ')}`, ...lines];
  }
  // New nameservers go first: a resolver reads them in order, and the host's options
  // and search lines mean the same wherever they stand.
  lines = [...servers.map((ns) => `nameserver ${ns}`), ...lines];
  return lines.join('\n').trimEnd() + '\n';
}

const LOCALHOST_LINES = [
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
];

// A fully qualified hostname also answers to its first label, as on docker.
function ownNames(hostname: string, aliases: readonly string[]): string[] {
  const short = hostname.includes('.') ? [hostname.slice(0, hostname.indexOf('.'))] : [];
  return [...new Set([hostname, ...short, ...aliases].filter((n) => n !== ''))];
}

const line = (e: HostEntry) => `${e.ip}\t${e.names.join(' ')}`;

function hostsHasName(hosts: string, name: string): boolean {
  return hosts
    .split('\n')
    .some((l) => l.replace(/#.*/, '').trim().split(/\s+/).slice(1).includes(name));
}

// none (and a bridge whose address is not known yet): localhost and the hostname on
// 127.0.0.1. bridge and container: localhost lines, --add-host entries (before the own
// line, so that a user's entry for the same name wins, as on docker), the own address,
// then the peers sorted by name. host: the host's file as it is, with the --add-host
// entries and, if the host's file lacks it, the hostname on the host's address.
export function containerHosts(
  hostname: string,
  mode: NetworkMode,
  hostHosts: string,
  opts: HostsOptions = {},
): string {
  const extra = (opts.extraHosts ?? []).map(line);
  if (mode === 'host') {
    const own =
      opts.ip !== undefined && !hostsHasName(hostHosts, hostname)
        ? [line({ ip: opts.ip, names: ownNames(hostname, opts.aliases ?? []) })]
        : [];
    if (own.length + extra.length === 0) return hostHosts;
    const base = hostHosts === '' || hostHosts.endsWith('\n') ? hostHosts : `${hostHosts}\n`;
    return [base + [...extra, ...own].join('\n'), ''].join('\n');
  }
  const names = ownNames(hostname, opts.aliases ?? []);
  const ip = mode === 'none' ? undefined : opts.ip;
  const lines = [
    ip !== undefined ? '127.0.0.1\tlocalhost' : `127.0.0.1\tlocalhost ${names.join(' ')}`,
    ...LOCALHOST_LINES,
    ...extra,
  ];
  if (ip !== undefined) {
    lines.push(line({ ip, names }));
    const peers = [...(opts.peers ?? [])]
      .filter((p) => p.ip !== ip)
      .sort((a, b) => (a.names[0] ?? '').localeCompare(b.names[0] ?? ''));
    lines.push(...peers.map(line));
  }
  return [...lines, ''].join('\n');
}

// docker's --add-host: NAME:IP or NAME=IP; IP may be in brackets, or "host-gateway".
export function parseExtraHost(entry: string, field = 'extraHosts'): { name: string; ip: string } {
  const eq = entry.indexOf('=');
  const sep = eq >= 0 ? eq : entry.indexOf(':');
  const name = sep < 0 ? '' : entry.slice(0, sep);
  let ip = sep < 0 ? '' : entry.slice(sep + 1);
  if (/^\[.*\]$/.test(ip)) ip = ip.slice(1, -1);
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$/.test(name))
    throw invalid(field, `"${entry}" is not NAME:IP (a host name, then an IP address)`);
  if (ip !== 'host-gateway' && isIP(ip) === 0)
    throw invalid(field, `"${entry}": "${ip}" is not an IP address or host-gateway`);
  return { name, ip };
}

// --add-host entries as /etc/hosts lines; host-gateway means the host's advertised IP.
export function resolveExtraHosts(entries: readonly string[], hostGatewayIP: string): HostEntry[] {
  return entries.map((e, i) => {
    const { name, ip } = parseExtraHost(e, `extraHosts[${i}]`);
    return { ip: ip === 'host-gateway' ? hostGatewayIP : ip, names: [name] };
  });
}

export interface EtcOptions extends HostsOptions, Omit<ResolvOptions, 'upstreamResolv'> {
  // Where systemd-resolved's upstream file is read from (a fixture in tests).
  readonly upstreamResolvPath?: string;
}

export async function writeEtcFiles(
  dir: string,
  hostname: string,
  mode: NetworkMode,
  hostEtc = '/etc',
  opts: EtcOptions = {},
): Promise<EtcFiles> {
  const read = (f: string) => readFile(f, 'utf8').catch(() => '');
  const files: EtcFiles = {
    hosts: join(dir, 'hosts'),
    hostname: join(dir, 'hostname'),
    resolvConf: join(dir, 'resolv.conf'),
  };
  await writeFile(
    files.hosts,
    containerHosts(hostname, mode, await read(join(hostEtc, 'hosts')), opts),
  );
  await writeFile(files.hostname, `${hostname}\n`);
  const resolv: ResolvOptions = {
    ...(opts.dns ? { dns: opts.dns } : {}),
    ...(opts.dnsSearch ? { dnsSearch: opts.dnsSearch } : {}),
    upstreamResolv: await read(opts.upstreamResolvPath ?? SYSTEMD_RESOLVED_UPSTREAM),
  };
  await writeFile(
    files.resolvConf,
    containerResolvConf(await read(join(hostEtc, 'resolv.conf')), mode !== 'host', resolv),
  );
  return files;
}

// Rewrites a file on its own inode: /etc/hosts is bind-mounted into running containers,
// and a file renamed over it would leave them reading the old one. The new text is padded
// with newlines to the old length and written in one call before the truncate, so a
// reader never finds the file empty, only old, or new with blank lines after it.
export async function rewriteHosts(path: string, content: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const body = Buffer.from(content);
    const padded =
      body.length < size ? Buffer.concat([body, Buffer.alloc(size - body.length, '\n')]) : body;
    let off = 0;
    while (off < padded.length) {
      const { bytesWritten } = await fh.write(padded, off, padded.length - off, off);
      off += bytesWritten;
    }
    await fh.truncate(body.length);
  } finally {
    await fh.close();
  }
}
