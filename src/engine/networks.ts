// Bridge networks and the containers' places on them. A network is a record (subnet,
// gateway, bridge name); its Linux bridge is made by the CNI bridge plugin at the first
// attachment. A container's attachment is a named network namespace, berth-<id12>, with
// an eth0 on the network's bridge, made by the CNI chain of cni.ts.
//
// What is made on the host is recorded before it is made, and the record goes last:
//   - an attachment's row (with its port mappings) before its netns and the CNI ADD; the
//     CNI cache file (the results DEL needs) before and during the ADD; the row is deleted
//     only after the DEL and the netns are gone;
//   - a bridge's marker file under the run root before the first ADD can make it.
// So whatever instant berthd dies at, sweep() finds each half-made attachment by its row
// or its cache file and each orphaned bridge by its marker, and undoes them. Leases, the
// CNI cache, netns and markers live on the run root: a reboot takes them all together.
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  addressOf,
  bridgeConfList,
  Cni,
  loopbackConfList,
  type CniConfList,
} from '../network/cni.ts';
import {
  bridgePorts,
  createNetns,
  deleteLink,
  deleteNetns,
  ensurePublishedPortsRule,
  linkExists,
  listNetns,
  netnsExists,
  netnsPathOf,
  publishedPortsBridges,
  readHostRoutes,
  removePublishedPortsRule,
  NETNS_DIR,
  type HostRoute,
} from '../network/netns.ts';
import type { Store } from '../store/index.ts';
import type {
  CreateNetworkRequest,
  NetworkAttachment,
  NetworkAttachmentRecord,
  NetworkRecord,
  PortMapping,
} from '../types/network.ts';
import { BerthError, errorMessage, invalid } from '../util/errors.ts';
import { NAME_PATTERN, newId, shortId } from '../util/ids.ts';
import type { Logger } from '../util/logger.ts';
import type { EventBus } from './events.ts';
import { KeyedMutex } from './mutex.ts';

export const DEFAULT_NETWORK = 'bridge';
export const DEFAULT_BRIDGE_SUBNET = '10.213.0.0/16';
export const DEFAULT_BRIDGE_NAME = 'berth0';
// User networks without a subnet get the first free /24 of this.
export const DEFAULT_NETWORK_POOL = '10.214.0.0/16';
const POOL_PREFIX = 24;
const IFNAME = 'eth0';
const NETNS_PREFIX = 'berth-';
const NAME_MAX = 64;
// Network modes: never network names.
const RESERVED = new Set(['host', 'none', 'default']);

// ---- IPv4 ----

export interface Cidr {
  // The network address, as an unsigned 32-bit number.
  readonly base: number;
  readonly prefix: number;
}

export function parseIPv4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    // No leading zeros: inet_aton would read them as octal.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.base)}/${c.prefix}`;
}

// Any CIDR, host bits and all (routes, pools); undefined when it is none.
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const ip = parseIPv4(m[1] ?? '');
  const prefix = Number(m[2]);
  if (ip === undefined || prefix > 32) return undefined;
  return { base: (ip & maskOf(prefix)) >>> 0, prefix };
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & maskOf(p)) >>> 0 === (b.base & maskOf(p)) >>> 0;
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.base;
}

const broadcastOf = (c: Cidr) => (c.base | (~maskOf(c.prefix) >>> 0)) >>> 0;

// Address ranges a bridge network must not take: the host's own, multicast, reserved.
const UNUSABLE: readonly [string, string][] = [
  ['0.0.0.0/8', 'is "this network"'],
  ['127.0.0.0/8', 'is loopback'],
  ['169.254.0.0/16', 'is link-local'],
  ['224.0.0.0/4', 'is multicast'],
  ['240.0.0.0/4', 'is reserved'],
];

// A subnet for a network: IPv4, its network address exact, /8 to /30 (a gateway and at
// least one container).
export function checkSubnet(s: string, field = 'subnet'): Cidr {
  if (s.includes(':')) throw invalid(field, `"${s}": IPv6 subnets are not supported`);
  const c = parseCidr(s);
  if (!c) throw invalid(field, `"${s}" is not an IPv4 CIDR like 10.214.7.0/24`);
  if (c.prefix < 8 || c.prefix > 30)
    throw invalid(field, `"${s}": the prefix length must be from 8 to 30`);
  const given = parseIPv4(s.split('/')[0] ?? '');
  if (given !== c.base)
    throw invalid(field, `"${s}" has host bits set; the network address is ${formatCidr(c)}`);
  for (const [range, why] of UNUSABLE) {
    const r = parseCidr(range);
    if (r && cidrOverlaps(r, c)) throw invalid(field, `"${s}" ${why} (${range})`);
  }
  return c;
}

// The gateway given, checked against the subnet; or the subnet's first address.
export function checkGateway(gw: string | undefined, subnet: Cidr, field = 'gateway'): string {
  if (gw === undefined || gw === '') return formatIPv4(subnet.base + 1);
  const ip = parseIPv4(gw);
  if (ip === undefined) throw invalid(field, `"${gw}" is not an IPv4 address`);
  if (!cidrContains(subnet, ip))
    throw invalid(field, `${gw} is not in the subnet ${formatCidr(subnet)}`);
  if (ip === subnet.base || ip === broadcastOf(subnet))
    throw invalid(field, `${gw} is the network or broadcast address of ${formatCidr(subnet)}`);
  return gw;
}

// The first subnet of the given size in the pool that overlaps none taken.
export function pickSubnet(pool: Cidr, prefix: number, taken: readonly Cidr[]): Cidr | undefined {
  const step = 2 ** (32 - prefix);
  const end = pool.base + 2 ** (32 - pool.prefix);
  for (let base = pool.base; base + step <= end; base += step) {
    const c = { base: base >>> 0, prefix };
    if (!taken.some((t) => cidrOverlaps(t, c))) return c;
  }
  return undefined;
}

// ---- names and requests ----

export function validateNetworkName(name: string, field = 'name'): void {
  if (name.length < 1 || name.length > NAME_MAX || !NAME_PATTERN.test(name))
    throw invalid(
      field,
      `"${name}" is not a network name: 1 to ${NAME_MAX} characters of a-z, A-Z, 0-9, _, . and -, starting with a letter or digit`,
    );
}

// Linux interface names: at most 15 bytes.
export function validateBridgeName(name: string, field = 'bridge-name'): void {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(name))
    throw invalid(
      field,
      `"${name}" is not an interface name: 1 to 15 of a-z, A-Z, 0-9, _, . and -`,
    );
}

function checkLabels(labels: Record<string, string>): void {
  for (const k of Object.keys(labels))
    if (k === '' || k.includes('=')) throw invalid('labels', `"${k}" is not a label key`);
}

export function validatePortMappings(ms: readonly PortMapping[]): void {
  const seen = new Set<string>();
  const port = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  for (const m of ms) {
    const what = `${m.hostIP ? `${m.hostIP}:` : ''}${m.hostPort}:${m.containerPort}/${m.protocol}`;
    if (!port(m.hostPort) || !port(m.containerPort))
      throw invalid('portMappings', `${what}: ports are 1 to 65535`);
    if (m.protocol !== 'tcp' && m.protocol !== 'udp')
      throw invalid('portMappings', `${what}: the protocol is tcp or udp`);
    if (m.hostIP !== '' && parseIPv4(m.hostIP) === undefined)
      throw invalid('portMappings', `${what}: the host IP is not an IPv4 address`);
    const key = `${m.hostIP}|${m.hostPort}|${m.protocol}`;
    if (seen.has(key)) throw invalid('portMappings', `${what}: the host port is given twice`);
    seen.add(key);
  }
}

// portmap's runtimeConfig entries: no hostIP means every address.
function cniPortMappings(ms: readonly PortMapping[]): Record<string, unknown>[] {
  return ms.map((m) => ({
    hostPort: m.hostPort,
    containerPort: m.containerPort,
    protocol: m.protocol,
    ...(m.hostIP ? { hostIP: m.hostIP } : {}),
  }));
}

const samePorts = (a: readonly PortMapping[], b: readonly PortMapping[]) =>
  JSON.stringify(cniPortMappings(a)) === JSON.stringify(cniPortMappings(b));

export const netnsNameOf = (containerId: string) => `${NETNS_PREFIX}${shortId(containerId)}`;

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

// ---- the host ----

// What the service needs of the host, so unit tests can stand in for it.
export interface NetworkHost {
  readonly cni: Pick<Cni, 'add' | 'del' | 'cached' | 'cachedIds'>;
  createNetns(name: string): Promise<string>;
  deleteNetns(name: string): Promise<void>;
  netnsExists(name: string): boolean;
  netnsPath(name: string): string;
  listNetns(): Promise<string[]>;
  linkExists(name: string): boolean;
  deleteLink(name: string): Promise<void>;
  bridgePorts(bridge: string): Promise<string[]>;
  routes(): Promise<HostRoute[]>;
  ensurePublishedPortsRule(bridge: string, subnet?: string): Promise<void>;
  removePublishedPortsRule(bridge: string): Promise<void>;
  publishedPortsBridges(): Promise<string[]>;
}

export function hostNetworkHost(opts: {
  cacheDir: string;
  pluginDirs?: readonly string[];
  netnsDir?: string;
  proc?: string;
  sys?: string;
}): NetworkHost {
  const dir = opts.netnsDir ?? NETNS_DIR;
  return {
    cni: new Cni({
      cacheDir: opts.cacheDir,
      ...(opts.pluginDirs ? { pluginDirs: opts.pluginDirs } : {}),
    }),
    createNetns: (name) => createNetns(name, dir),
    deleteNetns: (name) => deleteNetns(name, dir),
    netnsExists: (name) => netnsExists(name, dir),
    netnsPath: (name) => netnsPathOf(name, dir),
    listNetns: () => listNetns(dir),
    linkExists: (name) => linkExists(name, opts.sys),
    deleteLink: (name) => deleteLink(name, opts.sys),
    bridgePorts: (bridge) => bridgePorts(bridge, opts.sys),
    routes: () => readHostRoutes(opts.proc),
    ensurePublishedPortsRule,
    removePublishedPortsRule,
    publishedPortsBridges,
  };
}

export interface NetworkServiceOptions {
  readonly runRoot: string;
  // The default network's subnet and bridge (`--bridge-subnet`, `--bridge-name`).
  readonly bridgeSubnet?: string;
  readonly bridgeName?: string;
  readonly pool?: string;
  readonly pluginDirs?: readonly string[];
  readonly host?: NetworkHost;
}

export class NetworkService {
  private readonly store: Store;
  private readonly events: EventBus;
  private readonly log: Logger;
  private readonly host: NetworkHost;
  private readonly ipamDir: string;
  private readonly bridgesDir: string;
  private readonly bridgeSubnet: string;
  private readonly bridgeName: string;
  private readonly pool: Cidr;
  private readonly locks = new KeyedMutex();
  // Bridges whose published-ports rule this process has put in place.
  private readonly ruled = new Set<string>();
  private usedBy: (n: NetworkRecord) => string[] = () => [];

  constructor(store: Store, events: EventBus, log: Logger, opts: NetworkServiceOptions) {
    this.store = store;
    this.events = events;
    this.log = log;
    const cniRoot = join(opts.runRoot, 'cni');
    this.ipamDir = join(cniRoot, 'ipam');
    this.bridgesDir = join(cniRoot, 'bridges');
    this.host =
      opts.host ??
      hostNetworkHost({
        cacheDir: join(cniRoot, 'results'),
        ...(opts.pluginDirs ? { pluginDirs: opts.pluginDirs } : {}),
      });
    this.bridgeSubnet = opts.bridgeSubnet ?? DEFAULT_BRIDGE_SUBNET;
    this.bridgeName = opts.bridgeName ?? DEFAULT_BRIDGE_NAME;
    this.pool = checkSubnet(opts.pool ?? DEFAULT_NETWORK_POOL, 'pool');
  }

  // The engine answers which containers (ids) are configured to use a network, attached
  // or not; until it does, only attachments count.
  setUsedBy(fn: (n: NetworkRecord) => string[]): void {
    this.usedBy = fn;
  }

  // Makes the default network's record if missing, or moves it to the daemon's options
  // while nothing is attached to it. Touches nothing on the host.
  async init(): Promise<{ networks: number }> {
    const subnet = checkSubnet(this.bridgeSubnet, 'bridge-subnet');
    validateBridgeName(this.bridgeName);
    await mkdir(this.ipamDir, { recursive: true, mode: 0o700 });
    await mkdir(this.bridgesDir, { recursive: true, mode: 0o700 });
    const want = {
      subnet: formatCidr(subnet),
      gateway: checkGateway(undefined, subnet),
      bridge: this.bridgeName,
    };
    const clash = this.store.networks
      .list()
      .find((n) => !n.builtin && (n.bridge === want.bridge || overlaps(n.subnet, subnet)));
    if (clash)
      throw invalid(
        clash.bridge === want.bridge ? 'bridge-name' : 'bridge-subnet',
        `network ${clash.name} (${clash.subnet}, bridge ${clash.bridge}) already has ${clash.bridge === want.bridge ? want.bridge : `a subnet overlapping ${want.subnet}`}`,
      );
    const cur = this.store.networks.list().find((n) => n.builtin);
    if (!cur) {
      const rec: NetworkRecord = {
        id: newId(),
        name: DEFAULT_NETWORK,
        driver: 'bridge',
        ...want,
        labels: {},
        createdAt: now(),
        builtin: true,
      };
      this.store.tx(() => {
        this.store.networks.insert(rec);
        this.announce('create', rec);
      });
      this.log.info({ subnet: rec.subnet, bridge: rec.bridge }, 'network: default network made');
    } else if (
      cur.subnet !== want.subnet ||
      cur.gateway !== want.gateway ||
      cur.bridge !== want.bridge
    ) {
      const users = this.store.networks.attachments(cur.id);
      if (users.length > 0) {
        this.log.warn(
          { now: cur.subnet, bridge: cur.bridge, wanted: want, attached: users.length },
          'network: the default network keeps its subnet and bridge while containers are attached',
        );
      } else {
        this.store.networks.update(cur.id, want);
        this.log.info({ was: cur.subnet, ...want }, 'network: default network moved');
      }
    }
    return { networks: this.store.networks.list().length };
  }

  list(): NetworkRecord[] {
    return this.store.networks.list();
  }

  // By full id, then name, then unique id prefix (docker's order).
  get(nameOrId: string): NetworkRecord {
    const n =
      (/^[0-9a-f]{64}$/.test(nameOrId) ? this.store.networks.get(nameOrId) : undefined) ??
      this.store.networks.byName(nameOrId);
    if (n) return n;
    if (/^[0-9a-f]+$/.test(nameOrId)) {
      const m = this.store.networks.byIdPrefix(nameOrId);
      if (m.length > 1)
        throw new BerthError(
          'NETWORK_AMBIGUOUS',
          `Network id prefix ${nameOrId} matches ${m.length} networks`,
          { field: 'network' },
        );
      if (m[0]) return m[0];
    }
    throw new BerthError('NETWORK_NOT_FOUND', `No such network: ${nameOrId}`, {
      field: 'network',
    });
  }

  // Attachments, all or one network's.
  attachments(nameOrId?: string): NetworkAttachmentRecord[] {
    return this.store.networks.attachments(
      nameOrId === undefined ? undefined : this.get(nameOrId).id,
    );
  }

  async create(req: CreateNetworkRequest): Promise<NetworkRecord> {
    validateNetworkName(req.name);
    const labels = req.labels ?? {};
    checkLabels(labels);
    const given =
      req.subnet === undefined || req.subnet === '' ? undefined : checkSubnet(req.subnet);
    if (given === undefined && req.gateway !== undefined && req.gateway !== '')
      throw invalid('gateway', 'a gateway needs a subnet (--subnet)');
    if (given) checkGateway(req.gateway, given);
    // One create at a time: two picking a subnet at once would pick the same.
    return this.locks.run('\0create', async () => {
      if (RESERVED.has(req.name) || this.store.networks.byName(req.name))
        throw new BerthError(
          'NETWORK_NAME_IN_USE',
          RESERVED.has(req.name)
            ? `Network name ${req.name} is reserved: it is a network mode`
            : `Network ${req.name} already exists`,
          { field: 'name' },
        );
      const all = this.store.networks.list();
      let subnet: Cidr;
      if (given) {
        const other = all.find((n) => overlaps(n.subnet, given));
        if (other)
          throw new BerthError(
            'NETWORK_SUBNET_IN_USE',
            `Invalid subnet: ${formatCidr(given)} overlaps network ${other.name} (${other.subnet})`,
            { field: 'subnet', network: other.name },
          );
        subnet = given;
      } else {
        const taken = [...all.map((n) => n.subnet), ...(await this.host.routes()).map((r) => r.dst)]
          .map(parseCidr)
          .filter((c): c is Cidr => c !== undefined);
        const picked = pickSubnet(this.pool, POOL_PREFIX, taken);
        if (!picked)
          throw new BerthError(
            'NETWORKS_EXHAUSTED',
            `No free /${POOL_PREFIX} left in ${formatCidr(this.pool)}; give a subnet (--subnet)`,
            { field: 'subnet' },
          );
        subnet = picked;
      }
      let id = newId();
      // 32 bits of the id name the bridge; a clash with another berthd's is unlikely, not
      // impossible.
      for (let i = 0; i < 8 && this.bridgeTaken(bridgeOf(id), all); i++) id = newId();
      const rec: NetworkRecord = {
        id,
        name: req.name,
        driver: 'bridge',
        subnet: formatCidr(subnet),
        gateway: checkGateway(req.gateway, subnet),
        bridge: bridgeOf(id),
        labels,
        createdAt: now(),
        builtin: false,
      };
      this.store.tx(() => {
        this.store.networks.insert(rec);
        this.announce('create', rec);
      });
      this.log.info(
        { network: rec.name, subnet: rec.subnet, bridge: rec.bridge },
        'network created',
      );
      return rec;
    });
  }

  // Refused for the default network and while a container uses it; the bridge, its
  // leases and rule go after the record.
  async remove(nameOrId: string): Promise<NetworkRecord> {
    const n = this.get(nameOrId);
    if (n.builtin)
      throw new BerthError(
        'NETWORK_BUILTIN',
        `Network ${n.name} is the default network and cannot be removed`,
        { field: 'network' },
      );
    await this.locks.run(`n:${n.id}`, async () => {
      if (!this.store.networks.get(n.id))
        throw new BerthError('NETWORK_NOT_FOUND', `No such network: ${nameOrId}`, {
          field: 'network',
        });
      const users = [
        ...new Set([
          ...this.store.networks.attachments(n.id).map((a) => a.containerId),
          ...this.usedBy(n),
        ]),
      ];
      if (users.length > 0)
        throw new BerthError(
          'NETWORK_IN_USE',
          `Network ${n.name} is in use by container ${users.map(shortId).join(', ')}`,
          { field: 'network', containers: users },
        );
      this.store.tx(() => {
        this.store.networks.delete(n.id);
        this.announce('destroy', n);
      });
    });
    await this.dropBridge(n.bridge, n.name).catch((e: unknown) =>
      this.log.warn(
        { network: n.name, bridge: n.bridge, err: errorMessage(e) },
        'network: bridge left for the next sweep',
      ),
    );
    this.log.info({ network: n.name }, 'network removed');
    return n;
  }

  // The CNI configuration list of a network.
  conflist(n: NetworkRecord, withPorts = true): CniConfList {
    return bridgeConfList(
      {
        name: n.name,
        bridge: n.bridge,
        subnet: n.subnet,
        gateway: n.gateway,
        ipamDataDir: this.ipamDir,
      },
      withPorts,
    );
  }

  netnsPath(containerId: string): string {
    return this.host.netnsPath(netnsNameOf(containerId));
  }

  // The container's attachment once it is complete.
  attachment(containerId: string): NetworkAttachment | undefined {
    const a = this.store.networks.attachment(containerId);
    const n = a && this.store.networks.get(a.networkId);
    return a && n && a.ip !== '' ? this.view(a, n) : undefined;
  }

  // Puts the container on the network in a namespace of its own: recorded first, then
  // the netns, then the CNI ADD. An attachment that is there already, complete, on this
  // network and with these ports, is returned as it is (a berthd restart finds the
  // running containers' so); any other is detached first.
  async attach(
    containerId: string,
    networkNameOrId: string,
    // makeNetns: makes the namespace at the path instead of `ip netns add` (a container in
    // a user namespace needs one that namespace owns: engine/userns.ts).
    opts: {
      portMappings: readonly PortMapping[];
      makeNetns?: ((path: string) => Promise<void>) | undefined;
    },
  ): Promise<NetworkAttachment> {
    validatePortMappings(opts.portMappings);
    const n = this.get(networkNameOrId);
    return this.locks.run(`c:${containerId}`, async () => {
      const cur = this.store.networks.attachment(containerId);
      if (cur) {
        if (
          cur.networkId === n.id &&
          cur.ip !== '' &&
          samePorts(cur.portMappings, opts.portMappings) &&
          this.host.netnsExists(cur.netns)
        )
          return this.view(cur, n);
        await this.detachLocked(containerId);
      }
      const rec: NetworkAttachmentRecord = {
        containerId,
        networkId: n.id,
        netns: netnsNameOf(containerId),
        ifname: IFNAME,
        portMappings: opts.portMappings.map((m) => ({ ...m })),
        createdAt: now(),
        ip: '',
        prefixLen: 0,
        gateway: '',
        mac: '',
      };
      // Under the network's lock: a remove either sees this row or is done before it.
      await this.locks.run(`n:${n.id}`, async () => {
        if (!this.store.networks.get(n.id))
          throw new BerthError('NETWORK_NOT_FOUND', `No such network: ${networkNameOrId}`, {
            field: 'network',
          });
        this.store.tx(() => {
          this.store.networks.insertAttachment(rec);
          this.announce('connect', n, { container: containerId });
        });
      });
      try {
        await this.markBridge(n);
        // A name of this container's that outlived its record is nobody else's.
        await this.host.deleteNetns(rec.netns);
        let path: string;
        if (opts.makeNetns) {
          path = this.host.netnsPath(rec.netns);
          await opts.makeNetns(path);
        } else path = await this.host.createNetns(rec.netns);
        await this.host.cni.add(
          loopbackConfList(),
          { containerId, netns: path, ifname: 'lo' },
          false,
        );
        const result = await this.host.cni.add(this.conflist(n, rec.portMappings.length > 0), {
          containerId,
          netns: path,
          ifname: IFNAME,
          capabilityArgs: { portMappings: cniPortMappings(rec.portMappings) },
        });
        const a = addressOf(result, IFNAME);
        await this.publishedPortsRule(n.bridge, n.subnet);
        const done = { ...rec, ip: a.ip, prefixLen: a.prefixLen, gateway: a.gateway, mac: a.mac };
        this.store.networks.setAttachmentAddress(containerId, done);
        this.log.debug({ container: shortId(containerId), network: n.name, ip: a.ip }, 'attached');
        return this.view(done, n);
      } catch (e) {
        await this.detachLocked(containerId).catch((c: unknown) =>
          this.log.error(
            { container: shortId(containerId), err: errorMessage(c) },
            'network: undoing a failed attach failed; the sweep will retry',
          ),
        );
        throw e;
      }
    });
  }

  // CNI DEL with what ADD cached, then the netns, then the record. Idempotent: safe
  // after any crash point and for a container that never had an attachment.
  async detach(containerId: string): Promise<void> {
    await this.locks.run(`c:${containerId}`, () => this.detachLocked(containerId));
  }

  // At berthd's start: detaches every attachment (recorded, or only cached) whose
  // container is not to keep one, and removes bridges of networks that are gone.
  // Returns how many attachments it undid. A berth-* netns this berthd has no trace of
  // is left alone: on a host with another berthd it is that one's.
  async sweep(keep: (containerId: string) => boolean): Promise<number> {
    let undone = 0;
    const recorded = this.store.networks.attachments().map((a) => a.containerId);
    const cached = await this.host.cni.cachedIds(IFNAME);
    const ids = [...new Set([...recorded, ...cached])];
    for (const id of ids) {
      if (keep(id)) continue;
      try {
        await this.detach(id);
        undone++;
      } catch (e) {
        this.log.error({ container: shortId(id), err: errorMessage(e) }, 'network: sweep failed');
      }
    }
    const known = new Set(ids.map(netnsNameOf));
    const foreign = (await this.host.listNetns()).filter(
      (ns) => ns.startsWith(NETNS_PREFIX) && !known.has(ns),
    );
    if (foreign.length > 0)
      this.log.info({ netns: foreign }, 'network: netns with no record here left alone');
    await this.sweepBridges();
    if (undone > 0) this.log.info({ undone }, 'network: leftover attachments swept');
    return undone;
  }

  // ---- helpers ----

  private async detachLocked(containerId: string): Promise<void> {
    const rec = this.store.networks.attachment(containerId);
    const netns = rec?.netns ?? netnsNameOf(containerId);
    const n = rec ? this.store.networks.get(rec.networkId) : undefined;
    await this.host.cni.del(
      {
        containerId,
        netns: this.host.netnsPath(netns),
        ifname: IFNAME,
        capabilityArgs: { portMappings: cniPortMappings(rec?.portMappings ?? []) },
      },
      n ? this.conflist(n) : undefined,
    );
    await this.host.deleteNetns(netns);
    if (!rec) return;
    this.store.tx(() => {
      this.store.networks.deleteAttachment(containerId);
      this.events.append({
        type: 'network',
        action: 'disconnect',
        actorId: rec.networkId,
        attributes: { name: n?.name ?? '', type: 'bridge', container: containerId },
      });
    });
    this.log.debug({ container: shortId(containerId), network: n?.name }, 'detached');
  }

  private view(a: NetworkAttachmentRecord, n: NetworkRecord): NetworkAttachment {
    return {
      network: n.name,
      netnsPath: this.host.netnsPath(a.netns),
      ip: a.ip,
      prefixLen: a.prefixLen,
      gateway: a.gateway,
      mac: a.mac,
      ifname: 'eth0',
    };
  }

  private bridgeTaken(bridge: string, all: readonly NetworkRecord[]): boolean {
    return all.some((n) => n.bridge === bridge) || this.host.linkExists(bridge);
  }

  private async markBridge(n: NetworkRecord): Promise<void> {
    const marker = join(this.bridgesDir, n.bridge);
    if (existsSync(marker)) return;
    await mkdir(this.bridgesDir, { recursive: true, mode: 0o700 });
    await writeFile(marker, `${n.id}\n`);
  }

  private async publishedPortsRule(bridge: string, subnet: string): Promise<void> {
    if (this.ruled.has(bridge)) return;
    await this.locks.run(`r:${bridge}`, async () => {
      if (this.ruled.has(bridge)) return;
      await this.host.ensurePublishedPortsRule(bridge, subnet);
      this.ruled.add(bridge);
    });
  }

  // A network's host state once its record is gone: its bridge, its rule, its leases,
  // then the marker that says the bridge was berth's. A bridge with a port left on it is
  // in use (by another berthd sharing it, or a veth a DEL could not delete): it stays,
  // and so does its marker, for the next sweep.
  private async dropBridge(bridge: string, name: string | undefined): Promise<void> {
    const ports = await this.host.bridgePorts(bridge);
    if (ports.length > 0)
      throw new BerthError(
        'RUNTIME_FAILED',
        `Bridge ${bridge} still has ${ports.join(', ')} on it; it stays`,
      );
    this.ruled.delete(bridge);
    await this.host.removePublishedPortsRule(bridge);
    await this.host.deleteLink(bridge);
    if (name !== undefined) await rm(join(this.ipamDir, name), { recursive: true, force: true });
    await rm(join(this.bridgesDir, bridge), { force: true });
  }

  private async sweepBridges(): Promise<void> {
    const all = this.store.networks.list();
    const bridges = new Set(all.map((n) => n.bridge));
    const names = new Set(all.map((n) => n.name));
    for (const b of await readdirOrEmpty(this.bridgesDir)) {
      if (bridges.has(b)) continue;
      try {
        await this.dropBridge(b, undefined);
        this.log.info({ bridge: b }, 'network: bridge of a removed network deleted');
      } catch (e) {
        this.log.error({ bridge: b, err: errorMessage(e) }, 'network: cannot delete bridge');
      }
    }
    for (const d of await readdirOrEmpty(this.ipamDir))
      if (!names.has(d)) await rm(join(this.ipamDir, d), { recursive: true, force: true });
    // A rule whose bridge is gone (whoever deleted it, any berthd) accepts nothing; the
    // rule comes after the bridge in an attach, so none is about to get its bridge.
    for (const b of await this.host.publishedPortsBridges().catch(() => []))
      if (!this.host.linkExists(b)) {
        this.ruled.delete(b);
        await this.host
          .removePublishedPortsRule(b)
          .catch((e: unknown) =>
            this.log.warn({ bridge: b, err: errorMessage(e) }, 'network: stale rule left'),
          );
      }
  }

  private announce(
    action: 'create' | 'destroy' | 'connect',
    n: NetworkRecord,
    extra: Record<string, string> = {},
  ): void {
    this.events.append({
      type: 'network',
      action,
      actorId: n.id,
      attributes: { name: n.name, type: n.driver, ...extra },
    });
  }
}

const bridgeOf = (id: string) => `brth-${id.slice(0, 8)}`;

function overlaps(subnet: string, c: Cidr): boolean {
  const s = parseCidr(subnet);
  return s !== undefined && cidrOverlaps(s, c);
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
