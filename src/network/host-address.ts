// The host's advertised IP, the address by which the world reaches a container's published
// ports (BERTH_HOST_IP, BERTH_ADDR_*, --add-host NAME:host-gateway): the daemon's
// --advertise-ip, else the primary IPv4 address of the default route's interface, else
// 127.0.0.1 so that a host without a default route still runs containers.
import { isIP } from 'node:net';
import { invalid } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';

export interface AdvertisedAddress {
  readonly ip: string;
  readonly source: 'advertise-ip' | 'default-route' | 'fallback';
  // The default route's interface, when it gave the address or was tried.
  readonly device?: string;
}

export type RunCommand = (argv: readonly string[]) => Promise<{ readonly stdout: string }>;

export interface HostAddressOptions {
  readonly advertiseIP?: string;
  // How `ip` runs (fixtures in tests).
  readonly run?: RunCommand;
}

export const FALLBACK_HOST_IP = '127.0.0.1';

// --advertise-ip: an address others can connect to, so not a wildcard.
export function parseAdvertiseIP(v: string, field = 'advertise-ip'): string {
  const ip = v.trim();
  if (isIP(ip) === 0) throw invalid(field, `"${v}" is not an IP address`);
  if (ip === '0.0.0.0' || /^[0:]+$/.test(ip))
    throw invalid(field, `"${v}" is a wildcard, not an address to reach the host by`);
  return ip;
}

interface RouteJson {
  dst?: string;
  dev?: string;
  metric?: number;
  flags?: string[];
}

interface AddrJson {
  ifname?: string;
  addr_info?: {
    family?: string;
    local?: string;
    scope?: string;
    secondary?: boolean;
    tentative?: boolean;
    deprecated?: boolean;
  }[];
}

function parseJsonArray<T>(text: string): T[] {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

// The interface of the default route with the lowest metric, from `ip -j route show
// default`; a route whose link is down loses to any other.
export function defaultRouteDevice(routeJson: string): string | undefined {
  const routes = parseJsonArray<RouteJson>(routeJson)
    .filter((r) => (r.dst ?? 'default') === 'default' && typeof r.dev === 'string')
    .map((r) => ({
      dev: r.dev as string,
      rank: (r.flags ?? []).includes('linkdown') ? 1 : 0,
      metric: r.metric ?? 0,
    }))
    .sort((a, b) => a.rank - b.rank || a.metric - b.metric);
  return routes[0]?.dev;
}

// The first global, primary, usable IPv4 address in `ip -j addr show dev X`.
export function primaryIPv4(addrJson: string): string | undefined {
  for (const link of parseJsonArray<AddrJson>(addrJson)) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet' || typeof a.local !== 'string') continue;
      if (a.scope !== undefined && a.scope !== 'global') continue;
      if (a.secondary || a.tentative || a.deprecated) continue;
      return a.local;
    }
  }
  return undefined;
}

const defaultRun: RunCommand = (argv) => execFile(argv, { timeoutMs: 5000 });

// Looked up once and cached: published addresses must not move under running
// containers. refresh() looks again (on SIGHUP, or when the integrator learns the
// route changed); containers see a new address when they next start.
export class HostAddress {
  private readonly advertiseIP: string | undefined;
  private readonly run: RunCommand;
  private current: AdvertisedAddress | undefined;
  private pending: Promise<AdvertisedAddress> | undefined;

  constructor(opts: HostAddressOptions = {}) {
    this.advertiseIP =
      opts.advertiseIP === undefined || opts.advertiseIP === ''
        ? undefined
        : parseAdvertiseIP(opts.advertiseIP);
    this.run = opts.run ?? defaultRun;
  }

  async get(): Promise<string> {
    return (this.current ?? (await this.refresh())).ip;
  }

  // The last address looked up, without looking.
  cached(): AdvertisedAddress | undefined {
    return this.current;
  }

  refresh(): Promise<AdvertisedAddress> {
    this.pending ??= this.lookUp().then(
      (a) => {
        this.current = a;
        this.pending = undefined;
        return a;
      },
      (e: unknown) => {
        this.pending = undefined;
        throw e;
      },
    );
    return this.pending;
  }

  private async lookUp(): Promise<AdvertisedAddress> {
    if (this.advertiseIP !== undefined) return { ip: this.advertiseIP, source: 'advertise-ip' };
    let device: string | undefined;
    try {
      device = defaultRouteDevice(
        (await this.run(['ip', '-j', 'route', 'show', 'default'])).stdout,
      );
      if (device !== undefined) {
        const ip = primaryIPv4(
          (await this.run(['ip', '-j', 'addr', 'show', 'dev', device])).stdout,
        );
        if (ip !== undefined) return { ip, source: 'default-route', device };
      }
    } catch {
      // No `ip`, or no such device any more: a host without a route still runs containers.
    }
    return { ip: FALLBACK_HOST_IP, source: 'fallback', ...(device ? { device } : {}) };
  }
}
