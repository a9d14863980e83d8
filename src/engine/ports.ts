// Host ports for containers: -p ports (fixed or berthd's pick) and named ports (always
// berthd's pick, Heroku/Nomad style). Allocated once at create and kept until removal, so
// a restarted container comes back on the same ports.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseExtraHost } from '../network/etc-files.ts';
import type { Store } from '../store/index.ts';
import type {
  NetworkCreateFields,
  PortBinding,
  PortProtocol,
  PortRequest,
  SelfKnowledgeMode,
} from '../types/ports.ts';
import { BerthError, invalid } from '../util/errors.ts';

export type {
  NetworkCreateFields,
  PortBinding,
  PortProtocol,
  PortRequest,
} from '../types/ports.ts';

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

// Nomad's dynamic range: below Linux's ephemeral range (32768-60999), so an outgoing
// connection's local port never holds a port berthd hands out.
export const DEFAULT_PORT_RANGE: PortRange = { from: 20000, to: 32000 };

export const PORT_NAME_PATTERN = /^[a-z][a-z0-9_]*$/;
const PORT_NAME_MAX = 63;

const isPort = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;

// "20000-32000", as the daemon's --port-range takes it.
export function parsePortRange(s: string, field = 'port-range'): PortRange {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(s.trim());
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || !isPort(from) || !isPort(to) || from > to)
    throw invalid(field, `"${s}" is not FROM-TO with 1 <= FROM <= TO <= 65535`);
  return { from, to };
}

// ---- what the host listens on ----

// Local ports in a /proc/net/{tcp,tcp6,udp,udp6} table. TCP counts only listening
// sockets (state 0A): a port held by an outgoing connection does not stop a listener.
// Every bound UDP socket counts, since UDP has no listening state.
export function parseProcNet(text: string, protocol: PortProtocol): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    const state = f[3];
    if (local === undefined || state === undefined) continue;
    const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (!isPort(port)) continue;
    if (protocol === 'tcp' && state.toUpperCase() !== '0A') continue;
    ports.add(port);
  }
  return ports;
}

export function hostListeningPorts(protocol: PortProtocol, procNet = '/proc/net'): Set<number> {
  const out = new Set<number>();
  for (const file of [protocol, `${protocol}6`]) {
    let text: string;
    try {
      text = readFileSync(join(procNet, file), 'utf8');
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const p of parseProcNet(text, protocol)) out.add(p);
  }
  return out;
}

// ---- checking requests ----

function checkPortRequest(r: PortRequest, field: string): PortRequest {
  if (r.protocol !== 'tcp' && r.protocol !== 'udp')
    throw invalid(`${field}.protocol`, `"${String(r.protocol)}" is not tcp or udp`);
  if (r.name !== undefined) {
    if (!PORT_NAME_PATTERN.test(r.name) || r.name.length > PORT_NAME_MAX)
      throw invalid(`${field}.name`, `"${r.name}" must match ${PORT_NAME_PATTERN.source}`);
  } else if (r.containerPort === undefined) {
    throw invalid(`${field}.containerPort`, 'an unnamed port needs its container port');
  }
  if (r.containerPort !== undefined && !isPort(r.containerPort))
    throw invalid(`${field}.containerPort`, `${r.containerPort} is not a port (1-65535)`);
  if (typeof r.hostIP !== 'string' || (r.hostIP !== '' && isIP(r.hostIP) === 0))
    throw invalid(`${field}.hostIP`, `"${String(r.hostIP)}" is not an IP address`);
  const hostPort = r.hostPort === 0 ? undefined : r.hostPort;
  if (hostPort !== undefined && !isPort(hostPort))
    throw invalid(`${field}.hostPort`, `${hostPort} is not a port (1-65535, or 0 for any)`);
  if (r.hostPortEnd !== undefined) {
    if (hostPort === undefined)
      throw invalid(`${field}.hostPortEnd`, 'a host port range needs its first port (hostPort)');
    if (!isPort(r.hostPortEnd) || r.hostPortEnd < hostPort)
      throw invalid(`${field}.hostPortEnd`, `${r.hostPortEnd} is not a port >= ${hostPort}`);
  }
  const out: PortRequest = { protocol: r.protocol, hostIP: r.hostIP };
  if (r.name !== undefined) out.name = r.name;
  if (r.containerPort !== undefined) out.containerPort = r.containerPort;
  if (hostPort !== undefined) out.hostPort = hostPort;
  if (r.hostPortEnd !== undefined && r.hostPortEnd !== hostPort) out.hostPortEnd = r.hostPortEnd;
  return out;
}

// Checks the requests of one container and drops what means nothing (hostPort 0, a
// one-port range). Names are unique per container.
export function checkPortRequests(reqs: readonly PortRequest[], field = 'ports'): PortRequest[] {
  const names = new Set<string>();
  return reqs.map((r, i) => {
    const c = checkPortRequest(r, `${field}[${i}]`);
    if (c.name !== undefined) {
      if (names.has(c.name))
        throw invalid(`${field}[${i}].name`, `"${c.name}" is given to more than one port`);
      names.add(c.name);
    }
    return c;
  });
}

const DOMAIN =
  /^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.?$/;

// docker's rules for --dns-search: a domain name, or "." for no search domain.
export function isDnsSearchDomain(s: string): boolean {
  return s === '.' || (s.length <= 255 && DOMAIN.test(s));
}

// The network fields of a create request, checked at the edge of the engine.
export function checkNetworkFields(f: NetworkCreateFields): void {
  if (f.ports !== undefined) checkPortRequests(f.ports);
  (f.extraHosts ?? []).forEach((h, i) => parseExtraHost(h, `extraHosts[${i}]`));
  (f.dns ?? []).forEach((ip, i) => {
    if (isIP(ip) === 0) throw invalid(`dns[${i}]`, `"${ip}" is not an IP address`);
  });
  (f.dnsSearch ?? []).forEach((d, i) => {
    if (!isDnsSearchDomain(d)) throw invalid(`dnsSearch[${i}]`, `"${d}" is not a domain name`);
  });
}

// -P: every exposed port ("80", "80/tcp", "53/udp", as in an image's ExposedPorts) that
// is not published already gets a host port from the range.
export function publishAllRequests(
  exposed: readonly string[],
  explicit: readonly PortRequest[],
): PortRequest[] {
  const seen = new Set(explicit.map((r) => `${r.containerPort}/${r.protocol}`));
  const out: PortRequest[] = [];
  for (const e of exposed) {
    const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(e.trim());
    const port = Number(m?.[1]);
    // sctp and the like cannot be published here; docker skips nothing, but berth has
    // no way to forward them.
    if (!m || !isPort(port)) continue;
    const protocol = (m[2]?.toLowerCase() ?? 'tcp') as PortProtocol;
    const key = `${port}/${protocol}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ containerPort: port, protocol, hostIP: '' });
  }
  return out;
}

// What the ports of a container mean in its network mode. In host mode the process binds
// the host's port itself, so the two sides are one number: a named port takes whatever
// berthd picks, a port with a container port reserves that very port on the host. With
// none or a shared namespace there is nothing to publish.
export function portsForMode(
  mode: SelfKnowledgeMode,
  reqs: readonly PortRequest[],
  field = 'ports',
): PortRequest[] {
  if (mode === 'bridge') return [...reqs];
  if (reqs.length > 0 && mode === 'none')
    throw invalid(field, 'a container without a network (none) has no ports to publish');
  if (reqs.length > 0 && mode === 'container')
    throw invalid(
      field,
      'a container sharing another container’s network uses that container’s ports',
    );
  return reqs.map((r, i) => {
    if (r.containerPort === undefined) return { ...r };
    if (r.hostPortEnd !== undefined)
      throw invalid(`${field}[${i}]`, 'in host mode a port cannot take a host port range');
    if (r.hostPort !== undefined && r.hostPort !== 0 && r.hostPort !== r.containerPort)
      throw invalid(
        `${field}[${i}]`,
        `in host mode the process binds the host port itself: ${r.hostPort} and ${r.containerPort} must be one number`,
      );
    return { ...r, hostPort: r.containerPort };
  });
}

// ---- the allocator ----

export interface PortAllocatorOptions {
  // Where tcp, tcp6, udp and udp6 are read from (a fixture tree in tests).
  readonly procNet?: string;
  // [0, 1), for the starting point of a search; tests pin it.
  readonly random?: () => number;
}

const label = (p: number, proto: PortProtocol) => `${p}/${proto}`;

function isUniqueViolation(e: unknown): boolean {
  return e instanceof Error && /UNIQUE constraint failed: host_ports\.host_port/.test(e.message);
}

export class PortAllocator {
  private readonly store: Store;
  private readonly range: PortRange;
  private readonly procNet: string;
  private readonly random: () => number;

  constructor(store: Store, range: PortRange, opts: PortAllocatorOptions = {}) {
    if (!isPort(range.from) || !isPort(range.to) || range.from > range.to)
      throw invalid('port-range', `${range.from}-${range.to} is not within 1-65535`);
    this.store = store;
    this.range = { from: range.from, to: range.to };
    this.procNet = opts.procNet ?? '/proc/net';
    this.random = opts.random ?? Math.random;
  }

  // All or nothing, in one transaction: inside a caller's transaction (the one that
  // inserts the container) it joins it, so the container and its ports commit together.
  // Bindings come back in the order of reqs.
  allocate(containerId: string, reqs: readonly PortRequest[]): PortBinding[] {
    const checked = checkPortRequests(reqs);
    if (checked.length === 0) return [];
    // Read before the transaction: /proc is the host's, not the store's, and the write
    // lock is best held briefly.
    const listening = new Map<PortProtocol, Set<number>>();
    for (const r of checked)
      if (!listening.has(r.protocol))
        listening.set(r.protocol, hostListeningPorts(r.protocol, this.procNet));
    const listens = (p: number, proto: PortProtocol) => listening.get(proto)?.has(p) ?? false;

    return this.store.tx(() => {
      const repo = this.store.ports;
      const existing = repo.byContainer(containerId);
      const names = new Set(existing.map((b) => b.name).filter((n) => n !== ''));
      let position = existing.reduce((m, b) => Math.max(m, b.position + 1), 0);

      // Fixed ports first, so that no pick in this call takes one a later request names.
      const taken: Record<PortProtocol, Set<number>> = { tcp: new Set(), udp: new Set() };
      checked.forEach((r, i) => {
        if (r.name !== undefined && names.has(r.name))
          throw invalid(`ports[${i}].name`, `the container already has a port named "${r.name}"`);
        if (r.hostPort === undefined || r.hostPortEnd !== undefined) return;
        if (taken[r.protocol].has(r.hostPort))
          throw invalid(
            `ports[${i}].hostPort`,
            `host port ${label(r.hostPort, r.protocol)} is requested twice`,
          );
        this.checkFree(r.hostPort, r.protocol, listens);
        taken[r.protocol].add(r.hostPort);
      });

      const out: PortBinding[] = [];
      checked.forEach((r, i) => {
        let hostPort = r.hostPort;
        if (hostPort === undefined || r.hostPortEnd !== undefined) {
          const from = hostPort ?? this.range.from;
          const to = r.hostPortEnd ?? this.range.to;
          const used = repo.used(r.protocol, from, to);
          const free = (p: number) =>
            !used.has(p) && !taken[r.protocol].has(p) && !listens(p, r.protocol);
          // docker searches a -p range from its start; berthd's own range from a random
          // point, so concurrent creators seldom probe the same ports.
          const start = hostPort === undefined ? Math.floor(this.random() * (to - from + 1)) : 0;
          hostPort = pick(from, to, start, free);
          if (hostPort === undefined)
            throw new BerthError(
              'PORTS_EXHAUSTED',
              `No free host port for ports[${i}]${r.name ? ` (${r.name})` : ''}: every ${r.protocol} port in ${from}-${to} is allocated or in use on the host`,
              { field: `ports[${i}]`, protocol: r.protocol, from, to },
            );
          taken[r.protocol].add(hostPort);
        }
        const b: PortBinding = {
          name: r.name ?? '',
          containerPort: r.containerPort ?? hostPort,
          protocol: r.protocol,
          hostIP: r.hostIP,
          hostPort,
        };
        try {
          repo.insert({ ...b, containerId, position: position++ });
        } catch (e) {
          // Unreachable while every writer goes through a transaction; the constraint
          // stays the backstop for one that does not.
          if (isUniqueViolation(e)) this.checkFree(hostPort, r.protocol, () => false);
          throw e;
        }
        out.push(b);
      });
      return out;
    });
  }

  private checkFree(
    port: number,
    proto: PortProtocol,
    listens: (p: number, proto: PortProtocol) => boolean,
  ): void {
    const h = this.store.ports.holder(port, proto);
    if (h)
      throw new BerthError(
        'PORT_IN_USE',
        `Host port ${label(port, proto)} is already allocated to container ${h.containerName ? `"${h.containerName}" ` : ''}(${h.containerId.slice(0, 12)})`,
        { field: 'ports', hostPort: port, protocol: proto, containerId: h.containerId },
      );
    if (listens(port, proto))
      throw new BerthError(
        'PORT_IN_USE',
        `Host port ${label(port, proto)} is in use by a process on the host`,
        { field: 'ports', hostPort: port, protocol: proto },
      );
  }

  release(containerId: string): void {
    this.store.tx(() => this.store.ports.deleteByContainer(containerId));
  }

  bindings(containerId: string): PortBinding[] {
    return this.store.ports.byContainer(containerId).map((r) => ({
      name: r.name,
      containerPort: r.containerPort,
      protocol: r.protocol,
      hostIP: r.hostIP,
      hostPort: r.hostPort,
    }));
  }

  // Ports of containers that are gone (a crash between the two): run at start.
  sweep(): number {
    return this.store.tx(() => this.store.ports.deleteOrphans());
  }
}

// Probes upward from from+start, wrapping once round the range.
function pick(
  from: number,
  to: number,
  start: number,
  free: (p: number) => boolean,
): number | undefined {
  const size = to - from + 1;
  for (let i = 0; i < size; i++) {
    const p = from + ((start + i) % size);
    if (free(p)) return p;
  }
  return undefined;
}
