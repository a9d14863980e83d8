// A container's network as the engine sees it: the mode it asked for, its namespace on a
// berth network (made before its bundle, given back before it shows as exited), its host
// ports, and the /etc/hosts of its peers on a user network.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { HostAddress } from '../network/host-address.ts';
import { containerHosts, resolveExtraHosts, rewriteHosts } from '../network/etc-files.ts';
import { NONE_MODE_IP } from '../network/self-knowledge.ts';
import type { Store } from '../store/index.ts';
import type { ContainerRecord, NetworkMode } from '../types/domain.ts';
import type { NetworkAttachment, PortMapping } from '../types/network.ts';
import type { PortBinding, PortRequest } from '../types/ports.ts';
import { BerthError, errorMessage, invalid } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { PortAllocator } from './ports.ts';

// What the engine needs of the network service (engine/networks.ts).
export interface NetworkProvider {
  get(nameOrId: string): { readonly name: string };
  attach(
    containerId: string,
    network: string,
    opts: {
      portMappings: readonly PortMapping[];
      makeNetns?: ((path: string) => Promise<void>) | undefined;
    },
  ): Promise<NetworkAttachment>;
  detach(containerId: string): Promise<void>;
  attachment(containerId: string): NetworkAttachment | undefined;
  sweep(keep: (containerId: string) => boolean): Promise<number>;
}

export interface Networking {
  readonly networks: NetworkProvider;
  readonly ports: PortAllocator;
  readonly hostAddress: HostAddress;
}

// How a container is reached, once its network is up: for the spec, /etc files and the
// self-knowledge env and network.json.
export interface NetInfo {
  readonly netnsPath?: string;
  readonly ip: string;
}

const live = (c: ContainerRecord) => c.state === 'running' || c.state === 'restarting';

export class ContainerNetwork {
  private readonly store: Store;
  private readonly log: Logger;
  private readonly stateDir: (id: string) => string;
  private net: Networking | undefined;

  constructor(store: Store, log: Logger, stateDir: (id: string) => string) {
    this.store = store;
    this.log = log;
    this.stateDir = stateDir;
  }

  set(n: Networking): void {
    this.net = n;
  }

  private networking(): Networking {
    if (!this.net) throw new BerthError('NOT_IMPLEMENTED', 'Networking is not available');
    return this.net;
  }

  // --network: bridge (default), host, none, container:NAME, or a user network's name.
  resolveMode(
    s: string | undefined,
    resolveContainer: (ref: string) => ContainerRecord,
  ): { mode: NetworkMode; network?: string } {
    if (s === undefined || s === '' || s === 'bridge' || s === 'default')
      return { mode: 'bridge', network: 'bridge' };
    if (s === 'host' || s === 'none') return { mode: s };
    if (s.startsWith('container:')) {
      const other = resolveContainer(s.slice('container:'.length));
      if (other.config.networkMode === 'container')
        throw invalid('networkMode', `${other.name} itself shares another container's network`);
      return { mode: 'container', network: other.id };
    }
    return { mode: 'bridge', network: this.networking().networks.get(s).name };
  }

  // Host ports are the container's from create to removal, so they survive restarts; the
  // caller runs this in the insert's transaction, so a clash leaves no container behind.
  allocatePorts(id: string, reqs: readonly PortRequest[]): void {
    if (reqs.length > 0) this.networking().ports.allocate(id, reqs);
  }

  releasePorts(id: string): void {
    this.net?.ports.release(id);
  }

  bindings(id: string): PortBinding[] {
    return this.net ? this.net.ports.bindings(id) : [];
  }

  hostIP(): Promise<string> {
    return this.net ? this.net.hostAddress.get() : Promise.resolve('127.0.0.1');
  }

  // Host ports and the network address, for the views.
  view(id: string): { bindings: PortBinding[]; attachment?: NetworkAttachment | undefined } {
    if (!this.net) return { bindings: [] };
    return { bindings: this.net.ports.bindings(id), attachment: this.net.networks.attachment(id) };
  }

  // Namespaces, leases and port rules of containers that no longer run (a crash mid-start,
  // a reboot), and host ports of containers that no longer exist.
  async sweep(keep: (id: string) => boolean): Promise<number> {
    if (!this.net) return 0;
    const n = await this.net.networks.sweep(keep);
    this.net.ports.sweep();
    return n;
  }

  // The container's network, made before its bundle: its own namespace on a berth network
  // (with its host ports mapped), or another container's.
  // makeNetns: see NetworkService.attach.
  async connect(
    c: ContainerRecord,
    get: (id: string) => ContainerRecord,
    makeNetns?: (path: string) => Promise<void>,
  ): Promise<NetInfo> {
    const mode = c.config.networkMode;
    if (mode === 'host') return { ip: await this.networking().hostAddress.get() };
    if (mode === 'none') return { ip: NONE_MODE_IP };
    if (mode === 'container') {
      const other = get(c.config.network ?? '');
      if (!live(other))
        throw new BerthError(
          'CONTAINER_NOT_RUNNING',
          `Cannot start container ${c.name}: ${other.name}, whose network it shares, is not running`,
        );
      return this.infoOf(other);
    }
    const { networks, ports } = this.networking();
    const a = await networks.attach(c.id, c.config.network ?? 'bridge', {
      portMappings: ports.bindings(c.id).map((b) => ({
        hostPort: b.hostPort,
        containerPort: b.containerPort,
        protocol: b.protocol,
        hostIP: b.hostIP,
      })),
      makeNetns,
    });
    await this.refreshPeers(c.config.network ?? 'bridge', c.id);
    return { netnsPath: a.netnsPath, ip: a.ip };
  }

  // Never throws: a container that cannot leave its network cleanly still stops; the sweep
  // at the next start gets what is left.
  async disconnect(c: ContainerRecord): Promise<void> {
    if (c.config.networkMode !== 'bridge' || !this.net) return;
    try {
      await this.net.networks.detach(c.id);
      await this.refreshPeers(c.config.network ?? 'bridge', c.id);
    } catch (e) {
      this.log.warn({ id: c.id, err: errorMessage(e) }, 'leaving the network failed');
    }
  }

  // The other running containers on a user network, by name.
  peersOf(c: ContainerRecord): { ip: string; names: string[] }[] {
    if (c.config.networkMode !== 'bridge' || c.config.network === 'bridge') return [];
    return this.members(c.config.network ?? '', (x) => x.id !== c.id && live(x)).map((m) => ({
      ip: m.ip,
      names: [m.c.name, m.c.config.hostname],
    }));
  }

  private members(
    network: string,
    include: (c: ContainerRecord) => boolean,
  ): { c: ContainerRecord; ip: string }[] {
    return this.store.containers
      .list()
      .filter((x) => x.config.networkMode === 'bridge' && x.config.network === network)
      .filter(include)
      .flatMap((x) => {
        const a = this.net?.networks.attachment(x.id);
        return a ? [{ c: x, ip: a.ip }] : [];
      });
  }

  // Where a running container's network is, for one that shares it.
  private async infoOf(c: ContainerRecord): Promise<NetInfo> {
    if (c.config.networkMode === 'bridge') {
      const a = this.net?.networks.attachment(c.id);
      if (a) return { netnsPath: a.netnsPath, ip: a.ip };
    }
    if (c.config.networkMode === 'host') return { ip: await this.networking().hostAddress.get() };
    return { netnsPath: `/proc/${c.pid}/ns/net`, ip: NONE_MODE_IP };
  }

  // On a user network containers find each other by name through /etc/hosts, rewritten in
  // place (it is bind-mounted) whenever one joins or leaves, so names keep resolving while
  // berthd is down. The default network, as docker's, does not do this.
  private async refreshPeers(network: string, changed: string): Promise<void> {
    if (network === 'bridge' || !this.net) return;
    const members = this.members(network, (x) => x.id === changed || live(x));
    const hostIP = await this.net.hostAddress.get();
    for (const { c: x, ip } of members) {
      const file = join(this.stateDir(x.id), 'hosts');
      if (!existsSync(file)) continue;
      const peers = members
        .filter((p) => p.c.id !== x.id)
        .map((p) => ({ ip: p.ip, names: [p.c.name, p.c.config.hostname] }));
      await rewriteHosts(
        file,
        containerHosts(x.config.hostname, 'bridge', '', {
          ip,
          aliases: [x.name],
          extraHosts: resolveExtraHosts(x.config.extraHosts ?? [], hostIP),
          peers,
        }),
      ).catch((e: unknown) =>
        this.log.warn({ id: x.id, err: errorMessage(e) }, 'rewriting /etc/hosts failed'),
      );
    }
  }
}
