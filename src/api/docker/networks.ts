// Docker's networks endpoints over berth's bridge networks. A berth network is a bridge
// with one IPv4 subnet; a container is on one network, chosen when it is created. So
// connecting a container to a second network, or disconnecting it, is refused plainly;
// connecting it to the network it is on already is a success that changes nothing (compose
// asks for that). Labels round-trip exactly (compose finds its networks by them).
import type { FastifyInstance } from 'fastify';
import { validateNetworkName, type NetworkService } from '../../engine/index.ts';
import type { ContainerRecord } from '../../types/domain.ts';
import type { NetworkRecord } from '../../types/network.ts';
import { BerthError, invalid, isBerthError } from '../../util/errors.ts';
import type { ApiDeps } from '../server.ts';
import {
  bodyObject,
  boolFilter,
  dockerFilters,
  field,
  filterTime,
  labelsExclude,
  labelsMatch,
  stringMap,
  type Query,
} from './params.ts';

const notSupported = (what: string, fieldName?: string) =>
  new BerthError('NOT_IMPLEMENTED', what, fieldName ? { field: fieldName } : undefined);

// The network a container is configured for, by name ('' when it has none of its own).
function networkOf(c: ContainerRecord): string {
  return c.config.networkMode === 'bridge' ? (c.config.network ?? 'bridge') : '';
}

export function dockerNetwork(
  deps: ApiDeps,
  n: NetworkRecord,
  withContainers: boolean,
): Record<string, unknown> {
  const containers: Record<string, unknown> = {};
  if (withContainers) {
    const names = new Map(deps.containers.list().map((c) => [c.id, c.name]));
    for (const a of deps.networks.attachments(n.id))
      containers[a.containerId] = {
        Name: names.get(a.containerId) ?? '',
        EndpointID: a.netns,
        MacAddress: a.mac,
        IPv4Address: a.ip ? `${a.ip}/${a.prefixLen}` : '',
        IPv6Address: '',
      };
  }
  return {
    Name: n.name,
    Id: n.id,
    Created: n.createdAt,
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: [{ Subnet: n.subnet, Gateway: n.gateway }] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: containers,
    // Only what was asked for at create, as Docker shows it (berth takes no options); the
    // default network shows Docker's markers of the default bridge.
    Options: n.builtin
      ? {
          'com.docker.network.bridge.default_bridge': 'true',
          'com.docker.network.bridge.name': n.bridge,
        }
      : {},
    Labels: { ...n.labels },
  };
}

// Containers configured for a network or attached to it.
function inUse(deps: ApiDeps): Set<string> {
  const used = new Set<string>();
  for (const c of deps.containers.list()) {
    const name = networkOf(c);
    if (name) used.add(name);
  }
  for (const a of deps.networks.attachments()) {
    const n = deps.networks.list().find((x) => x.id === a.networkId);
    if (n) used.add(n.name);
  }
  return used;
}

// Docker matches name and id filters as regular expressions, unanchored.
function matchesAny(values: readonly string[] | undefined, s: string): boolean {
  if (!values?.length) return true;
  return values.some((v) => {
    try {
      return new RegExp(v).test(s);
    } catch {
      return s.includes(v);
    }
  });
}

const NETWORK_FILTERS = ['name', 'id', 'label', 'driver', 'type', 'scope', 'dangling'] as const;

function listNetworks(deps: ApiDeps, q: Query): NetworkRecord[] {
  const f = dockerFilters(q, NETWORK_FILTERS);
  for (const t of f['type'] ?? [])
    if (t !== 'custom' && t !== 'builtin')
      throw invalid('filters', `type=${t}: the type is custom or builtin`);
  const dangling = boolFilter(f, 'dangling');
  const used = dangling === undefined ? undefined : inUse(deps);
  return deps.networks.list().filter((n) => {
    if (!matchesAny(f['name'], n.name) || !matchesAny(f['id'], n.id)) return false;
    if (!labelsMatch(n.labels, f['label'])) return false;
    if (f['driver']?.length && !f['driver'].includes('bridge')) return false;
    if (f['scope']?.length && !f['scope'].includes('local')) return false;
    if (f['type']?.length && !f['type'].includes(n.builtin ? 'builtin' : 'custom')) return false;
    // The default network is never dangling (Docker's rule for its predefined ones).
    if (used && dangling !== (!n.builtin && !used.has(n.name))) return false;
    return true;
  });
}

interface CreateRequest {
  name: string;
  subnet?: string;
  gateway?: string;
  labels: Record<string, string>;
}

// Docker's NetworkCreateRequest, with everything berth cannot do refused by name.
function parseCreate(body: unknown): CreateRequest {
  const b = bodyObject(body);
  const name = field(b, 'Name', 'string') ?? '';
  validateNetworkName(name, 'Name');
  field(b, 'CheckDuplicate', 'boolean');
  field(b, 'Attachable', 'boolean');
  const driver = field(b, 'Driver', 'string') ?? '';
  if (driver !== '' && driver !== 'bridge')
    throw notSupported(
      `Network driver "${driver}" is not supported by berth: only bridge`,
      'Driver',
    );
  const scope = field(b, 'Scope', 'string') ?? '';
  if (scope !== '' && scope !== 'local')
    throw notSupported(`Network scope "${scope}" is not supported by berth: only local`, 'Scope');
  for (const [k, what] of [
    ['Internal', 'Internal networks'],
    ['EnableIPv6', 'IPv6 networks'],
    ['Ingress', 'Ingress networks'],
    ['ConfigOnly', 'Config-only networks'],
  ] as const)
    if (field(b, k, 'boolean')) throw notSupported(`${what} are not supported by berth`, k);
  const from = field(b, 'ConfigFrom', 'object');
  if (from && from['Network'])
    throw notSupported('Networks configured from another (ConfigFrom) are not supported by berth');
  const options = stringMap(b, 'Options') ?? {};
  for (const k of Object.keys(options))
    throw notSupported(`Network option "${k}" is not supported by berth`, `Options.${k}`);
  const labels = stringMap(b, 'Labels') ?? {};
  const out: CreateRequest = { name, labels };
  const ipam = field(b, 'IPAM', 'object');
  if (ipam) {
    const driverName = field(ipam, 'Driver', 'string') ?? '';
    if (driverName !== '' && driverName !== 'default')
      throw notSupported(`IPAM driver "${driverName}" is not supported by berth`, 'IPAM.Driver');
    const ipamOpts = stringMap(ipam, 'Options') ?? {};
    for (const k of Object.keys(ipamOpts))
      throw notSupported(`IPAM option "${k}" is not supported by berth`, `IPAM.Options.${k}`);
    const config = ipam['Config'];
    if (config !== undefined && config !== null) {
      if (!Array.isArray(config)) throw invalid('IPAM.Config', 'must be an array');
      if (config.length > 1)
        throw notSupported('A berth network has one subnet: give at most one IPAM config');
      const c = config[0] as unknown;
      if (c !== undefined) {
        if (typeof c !== 'object' || c === null || Array.isArray(c))
          throw invalid('IPAM.Config.0', 'must be an object');
        const pool = c as Record<string, unknown>;
        if (field(pool, 'IPRange', 'string'))
          throw notSupported('IPAM IPRange is not supported by berth', 'IPAM.Config.0.IPRange');
        const aux = field(pool, 'AuxiliaryAddresses', 'object');
        if (aux && Object.keys(aux).length > 0)
          throw notSupported('IPAM AuxiliaryAddresses are not supported by berth');
        const subnet = field(pool, 'Subnet', 'string');
        const gateway = field(pool, 'Gateway', 'string');
        if (subnet) out.subnet = subnet;
        if (gateway) out.gateway = gateway;
      }
    }
  }
  return out;
}

export function registerDockerNetworkRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const networks: NetworkService = deps.networks;

  app.get('/networks', async (req) =>
    listNetworks(deps, req.query as Query).map((n) => dockerNetwork(deps, n, false)),
  );

  app.post('/networks/create', async (req, reply) => {
    const n = await networks.create(parseCreate(req.body));
    return reply.code(201).send({ Id: n.id, Warning: '' });
  });

  app.post('/networks/prune', async (req) => {
    const f = dockerFilters(req.query as Query, ['label', 'label!', 'until']);
    const until = f['until']?.map((v) => filterTime(v, 'until'));
    const deleted: string[] = [];
    for (const n of networks.list()) {
      if (n.builtin) continue;
      if (!labelsMatch(n.labels, f['label']) || !labelsExclude(n.labels, f['label!'])) continue;
      if (until && !until.every((t) => Date.parse(n.createdAt) < t)) continue;
      try {
        await networks.remove(n.id);
        deleted.push(n.name);
      } catch (e) {
        if (!isBerthError(e, 'NETWORK_IN_USE') && !isBerthError(e, 'NETWORK_NOT_FOUND')) throw e;
      }
    }
    return { NetworksDeleted: deleted };
  });

  const idOf = (params: unknown): string => (params as Record<string, string>)['id'] ?? '';

  app.get('/networks/:id', async (req) =>
    dockerNetwork(deps, networks.get(idOf(req.params)), true),
  );

  app.delete('/networks/:id', async (req, reply) => {
    await networks.remove(idOf(req.params));
    return reply.code(204).send();
  });

  app.post('/networks/:id/connect', async (req, reply) => {
    const n = networks.get(idOf(req.params));
    const b = bodyObject(req.body);
    const c = deps.containers.resolve(field(b, 'Container', 'string') ?? '');
    const ep = field(b, 'EndpointConfig', 'object');
    const ipam = ep && field(ep, 'IPAMConfig', 'object');
    if (ipam && (field(ipam, 'IPv4Address', 'string') || field(ipam, 'IPv6Address', 'string')))
      throw notSupported('A fixed address on connect is not supported by berth');
    if (networkOf(c) === n.name) return reply.code(200).send();
    throw notSupported(
      `Container ${c.name} is on ${networkOf(c) ? `network ${networkOf(c)}` : `network mode ${c.config.networkMode}`}: berth puts a container on one network, chosen when it is created (--network), and cannot connect it to another`,
    );
  });

  app.post('/networks/:id/disconnect', async (req) => {
    const n = networks.get(idOf(req.params));
    const b = bodyObject(req.body);
    const c = deps.containers.resolve(field(b, 'Container', 'string') ?? '');
    field(b, 'Force', 'boolean');
    if (networkOf(c) !== n.name)
      throw invalid('Container', `container ${c.name} is not connected to network ${n.name}`);
    throw notSupported(
      `Disconnecting a container from its network is not supported by berth: container ${c.name} keeps network ${n.name}, chosen when it was created`,
    );
  });
}
