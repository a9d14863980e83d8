// Networks without the kernel: subnets and gateways, picking a free /24, and the service's
// records, events, attach/detach order and sweep against a stand-in host.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/index.ts';
import { EventBus } from '../../src/engine/events.ts';
import {
  checkGateway,
  checkSubnet,
  cidrOverlaps,
  formatCidr,
  NetworkService,
  parseCidr,
  parseIPv4,
  pickSubnet,
  validateNetworkName,
  validatePortMappings,
  type Cidr,
  type NetworkHost,
} from '../../src/engine/networks.ts';
import { matchEvent, validateEventFilters } from '../../src/engine/event-filters.ts';
import { networkView } from '../../src/api/networks.ts';
import { networkRow } from '../../src/cli/networks.ts';
import type { CniCache, CniConfList, CniResult, CniRuntimeConf } from '../../src/network/cni.ts';
import type { HostRoute } from '../../src/network/netns.ts';
import { isBerthError } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/logger.ts';

const cidr = (s: string) => parseCidr(s) as Cidr;

describe('IPv4 subnets', () => {
  it('parses addresses strictly', () => {
    assert.equal(parseIPv4('10.214.0.1'), 0x0ad60001);
    assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
    for (const bad of ['10.214.0', '10.214.0.256', '010.1.1.1', '1.2.3.4.5', 'a.b.c.d', ''])
      assert.equal(parseIPv4(bad), undefined, bad);
  });

  it('checks a subnet and names the field', () => {
    assert.equal(formatCidr(checkSubnet('10.214.7.0/24')), '10.214.7.0/24');
    const bad: [string, RegExp][] = [
      ['10.214.7.0', /not an IPv4 CIDR/],
      ['10.214.7.5/24', /host bits set; the network address is 10\.214\.7\.0\/24/],
      ['10.0.0.0/7', /prefix length must be from 8 to 30/],
      ['10.0.0.0/31', /prefix length/],
      ['127.1.0.0/16', /loopback/],
      ['224.0.0.0/8', /multicast/],
      ['fd00::/64', /IPv6 subnets are not supported/],
    ];
    for (const [s, re] of bad)
      assert.throws(
        () => checkSubnet(s),
        (e) =>
          isBerthError(e, 'INVALID_ARGUMENT') &&
          /^Invalid subnet: /.test(e.message) &&
          re.test(e.message),
        s,
      );
    assert.throws(() => checkSubnet('x', 'bridge-subnet'), /^BerthError: Invalid bridge-subnet: /);
  });

  it('checks a gateway against its subnet; the first address by default', () => {
    const s = cidr('10.214.7.0/24');
    assert.equal(checkGateway(undefined, s), '10.214.7.1');
    assert.equal(checkGateway('10.214.7.254', s), '10.214.7.254');
    assert.throws(() => checkGateway('10.214.8.1', s), /Invalid gateway: 10\.214\.8\.1 is not in/);
    assert.throws(() => checkGateway('10.214.7.0', s), /network or broadcast/);
    assert.throws(() => checkGateway('10.214.7.255', s), /network or broadcast/);
    assert.throws(() => checkGateway('nope', s), /Invalid gateway: "nope" is not an IPv4/);
  });

  it('tells overlaps', () => {
    assert.ok(cidrOverlaps(cidr('10.214.0.0/16'), cidr('10.214.3.0/24')));
    assert.ok(cidrOverlaps(cidr('10.214.3.128/25'), cidr('10.214.3.0/24')));
    assert.ok(!cidrOverlaps(cidr('10.214.4.0/24'), cidr('10.214.3.0/24')));
  });

  it('picks the first free /24 of the pool', () => {
    const pool = cidr('10.214.0.0/16');
    assert.equal(formatCidr(pickSubnet(pool, 24, []) as Cidr), '10.214.0.0/24');
    const taken = ['10.214.0.0/24', '10.214.1.0/25', '10.214.2.7/32', '10.88.0.0/16'].map(cidr);
    assert.equal(formatCidr(pickSubnet(pool, 24, taken) as Cidr), '10.214.3.0/24');
    // A route that covers the whole pool leaves nothing.
    assert.equal(pickSubnet(pool, 24, [cidr('10.0.0.0/8')]), undefined);
    assert.equal(pickSubnet(cidr('10.214.0.0/23'), 24, [cidr('10.214.0.0/24')])?.base, 0x0ad60100);
  });

  it("takes docker's network names", () => {
    for (const ok of ['backend', 'a', 'my-net.1_x'])
      assert.doesNotThrow(() => validateNetworkName(ok));
    for (const bad of ['', '-x', 'a b', 'a/b', 'n'.repeat(65)])
      assert.throws(() => validateNetworkName(bad), /^BerthError: Invalid name: /, bad);
  });

  it('checks port mappings', () => {
    const m = { hostPort: 8080, containerPort: 80, protocol: 'tcp' as const, hostIP: '127.0.0.1' };
    assert.doesNotThrow(() => validatePortMappings([m, { ...m, protocol: 'udp' }]));
    assert.throws(() => validatePortMappings([m, m]), /given twice/);
    assert.throws(() => validatePortMappings([{ ...m, hostPort: 0 }]), /ports are 1 to 65535/);
    assert.throws(() => validatePortMappings([{ ...m, hostIP: '::1' }]), /not an IPv4/);
  });
});

// A host with no kernel behind it: netns are names in a set, the CNI chain hands out
// addresses, everything done is logged in order.
class FakeHost implements NetworkHost {
  readonly ops: string[] = [];
  readonly netns = new Set<string>();
  readonly links = new Set<string>();
  readonly caches = new Map<string, CniCache>();
  routeList: HostRoute[] = [];
  failAdd = false;
  private next = 2;

  readonly cni = {
    add: async (list: CniConfList, rt: CniRuntimeConf, cache = true): Promise<CniResult> => {
      this.ops.push(`add ${list.name} ${rt.ifname}`);
      const base: CniCache = {
        kind: 'berthCniCacheV1',
        containerId: rt.containerId,
        ifname: rt.ifname,
        netns: rt.netns,
        config: list,
        capabilityArgs: rt.capabilityArgs ?? {},
      };
      if (cache) this.caches.set(rt.containerId, base);
      if (this.failAdd) throw new Error('plugin failed');
      if (list.name === 'lo') return { cniVersion: '1.0.0' };
      const bridge = list.plugins[0]?.['bridge'];
      if (typeof bridge === 'string') this.links.add(bridge);
      const result: CniResult = {
        cniVersion: '1.0.0',
        interfaces: [
          { name: String(bridge) },
          { name: 'vethx' },
          { name: rt.ifname, mac: '02:00:00:00:00:01', sandbox: rt.netns },
        ],
        ips: [{ interface: 2, address: `10.213.0.${this.next++}/16`, gateway: '10.213.0.1' }],
      };
      if (cache) this.caches.set(rt.containerId, { ...base, result });
      return result;
    },
    del: async (rt: CniRuntimeConf, fallback?: CniConfList): Promise<void> => {
      const c = this.caches.get(rt.containerId);
      if (c === undefined && fallback === undefined) return;
      this.ops.push(`del ${(c?.config ?? fallback)?.name} ${c?.result ? 'cached' : 'uncached'}`);
      this.caches.delete(rt.containerId);
    },
    cached: async (id: string) => this.caches.get(id),
    cachedIds: async () => [...this.caches.keys()],
  };

  createNetns = async (name: string) => {
    if (this.netns.has(name)) throw new Error(`netns ${name} exists`);
    this.ops.push(`netns+ ${name}`);
    this.netns.add(name);
    return this.netnsPath(name);
  };
  deleteNetns = async (name: string) => {
    if (this.netns.delete(name)) this.ops.push(`netns- ${name}`);
  };
  netnsExists = (name: string) => this.netns.has(name);
  netnsPath = (name: string) => `/run/netns/${name}`;
  listNetns = async () => [...this.netns];
  linkExists = (name: string) => this.links.has(name);
  deleteLink = async (name: string) => {
    if (this.links.delete(name)) this.ops.push(`link- ${name}`);
  };
  bridgePorts: (bridge: string) => Promise<string[]> = async () => [];
  routes = async () => this.routeList;
  readonly rules = new Set<string>();
  ensurePublishedPortsRule = async (b: string) => {
    this.ops.push(`rule+ ${b}`);
    this.rules.add(b);
  };
  removePublishedPortsRule = async (b: string) => {
    this.ops.push(`rule- ${b}`);
    this.rules.delete(b);
  };
  publishedPortsBridges = async () => [...this.rules];
}

describe('NetworkService', () => {
  let dir: string;
  let store: Store;
  let events: EventBus;
  let host: FakeHost;
  let svc: NetworkService;
  const A = 'a'.repeat(64);
  const B = 'b'.repeat(64);

  const make = (opts: { bridgeSubnet?: string; bridgeName?: string } = {}) =>
    new NetworkService(store, events, silentLogger, { runRoot: join(dir, 'run'), host, ...opts });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-net-'));
    store = new Store(join(dir, 'berth.db'));
    events = new EventBus(store);
    host = new FakeHost();
    svc = make();
    await svc.init();
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const journal = () => events.after(0).filter((e) => e.type === 'network');

  it('init makes the default network once, and touches nothing on the host', async () => {
    const [n, ...rest] = svc.list();
    assert.equal(rest.length, 0);
    assert.ok(n);
    assert.deepEqual(
      { name: n.name, subnet: n.subnet, gateway: n.gateway, bridge: n.bridge, builtin: n.builtin },
      {
        name: 'bridge',
        subnet: '10.213.0.0/16',
        gateway: '10.213.0.1',
        bridge: 'berth0',
        builtin: true,
      },
    );
    await make().init();
    assert.equal(svc.list().length, 1);
    assert.deepEqual(host.ops, []);
    assert.deepEqual(
      journal().map((e) => e.action),
      ['create'],
    );
  });

  it("init moves the default network to the daemon's options while nothing is attached", async () => {
    await make({ bridgeSubnet: '10.77.0.0/16', bridgeName: 'brt-x' }).init();
    assert.deepEqual(
      [svc.get('bridge').subnet, svc.get('bridge').gateway, svc.get('bridge').bridge],
      ['10.77.0.0/16', '10.77.0.1', 'brt-x'],
    );
    await svc.attach(A, 'bridge', { portMappings: [] });
    await make({ bridgeSubnet: '10.78.0.0/16' }).init();
    assert.equal(svc.get('bridge').subnet, '10.77.0.0/16', 'kept while attached');
    await assert.rejects(make({ bridgeSubnet: '10.213.0.0/33' }).init(), /Invalid bridge-subnet/);
  });

  it('creates, finds by name, id and prefix, and refuses clashes', async () => {
    const n = await svc.create({ name: 'backend', labels: { team: 'x' } });
    assert.equal(n.subnet, '10.214.0.0/24');
    assert.equal(n.gateway, '10.214.0.1');
    assert.match(n.bridge, /^brth-[0-9a-f]{8}$/);
    assert.equal(svc.get('backend').id, n.id);
    assert.equal(svc.get(n.id).name, 'backend');
    assert.equal(svc.get(n.id.slice(0, 6)).name, 'backend');
    const m = await svc.create({ name: 'front', subnet: '10.99.0.0/24', gateway: '10.99.0.254' });
    assert.equal(m.gateway, '10.99.0.254');
    assert.equal((await svc.create({ name: 'third' })).subnet, '10.214.1.0/24');

    await assert.rejects(svc.create({ name: 'backend' }), (e) =>
      isBerthError(e, 'NETWORK_NAME_IN_USE'),
    );
    await assert.rejects(svc.create({ name: 'host' }), /reserved/);
    await assert.rejects(
      svc.create({ name: 'x', subnet: '10.99.0.128/25' }),
      (e) =>
        isBerthError(e, 'NETWORK_SUBNET_IN_USE') &&
        e.message === 'Invalid subnet: 10.99.0.128/25 overlaps network front (10.99.0.0/24)',
    );
    await assert.rejects(
      svc.create({ name: 'x', subnet: '10.213.5.0/24' }),
      /overlaps network bridge \(10\.213\.0\.0\/16\)/,
    );
    await assert.rejects(
      svc.create({ name: 'x', gateway: '10.1.1.1' }),
      /Invalid gateway: a gateway needs a subnet/,
    );
    await assert.rejects(svc.create({ name: 'x', subnet: 'bogus' }), /^BerthError: Invalid subnet/);
    assert.throws(
      () => svc.get('nope'),
      (e) => isBerthError(e, 'NETWORK_NOT_FOUND'),
    );
  });

  it("skips the host's routes when it picks a subnet", async () => {
    host.routeList = [
      { iface: 'eth0', dst: '10.214.0.0/23' },
      { iface: 'wg0', dst: '10.214.2.0/24' },
    ];
    assert.equal((await svc.create({ name: 'n1' })).subnet, '10.214.3.0/24');
    host.routeList = [{ iface: 'vpn', dst: '10.214.0.0/16' }];
    await assert.rejects(svc.create({ name: 'n2' }), (e) => isBerthError(e, 'NETWORKS_EXHAUSTED'));
  });

  it('concurrent creates never share a subnet', async () => {
    const made = await Promise.all(
      Array.from({ length: 20 }, (_, i) => svc.create({ name: `n${i}` })),
    );
    assert.equal(new Set(made.map((n) => n.subnet)).size, 20);
    assert.equal(new Set(made.map((n) => n.bridge)).size, 20);
  });

  it('remove refuses the default network and a network in use, then drops the bridge', async () => {
    await assert.rejects(svc.remove('bridge'), (e) => isBerthError(e, 'NETWORK_BUILTIN'));
    const n = await svc.create({ name: 'backend' });
    await svc.attach(A, 'backend', { portMappings: [] });
    await assert.rejects(
      svc.remove('backend'),
      (e) => isBerthError(e, 'NETWORK_IN_USE') && e.message.includes(A.slice(0, 12)),
    );
    await svc.detach(A);
    svc.setUsedBy((x) => (x.id === n.id ? [B] : []));
    await assert.rejects(svc.remove('backend'), /in use by container bbbbbbbbbbbb/);
    svc.setUsedBy(() => []);
    host.ops.length = 0;
    await svc.remove('backend');
    assert.deepEqual(host.ops, [`rule- ${n.bridge}`, `link- ${n.bridge}`]);
    assert.deepEqual(
      journal().map((e) => `${e.action} ${e.attributes['name']}`),
      [
        'create bridge',
        'create backend',
        'connect backend',
        'disconnect backend',
        'destroy backend',
      ],
    );
  });

  it('attach records first, then netns, loopback, the chain; detach undoes it in reverse', async () => {
    const pm = [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' as const, hostIP: '127.0.0.1' },
    ];
    const a = await svc.attach(A, 'bridge', { portMappings: pm });
    assert.deepEqual(a, {
      network: 'bridge',
      netnsPath: '/run/netns/berth-aaaaaaaaaaaa',
      ip: '10.213.0.2',
      prefixLen: 16,
      gateway: '10.213.0.1',
      mac: '02:00:00:00:00:01',
      ifname: 'eth0',
    });
    assert.deepEqual(host.ops, [
      'netns+ berth-aaaaaaaaaaaa',
      'add lo lo',
      'add bridge eth0',
      'rule+ berth0',
    ]);
    assert.deepEqual(svc.attachment(A), a);
    assert.equal(svc.netnsPath(A), '/run/netns/berth-aaaaaaaaaaaa');
    assert.deepEqual(host.caches.get(A)?.capabilityArgs, {
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    });
    assert.ok(existsSync(join(dir, 'run', 'cni', 'bridges', 'berth0')), 'bridge marked before');

    // The same again is the same attachment; other ports make a new one.
    assert.deepEqual(await svc.attach(A, 'bridge', { portMappings: pm }), a);
    const b = await svc.attach(A, 'bridge', { portMappings: [] });
    assert.equal(b.ip, '10.213.0.3');

    host.ops.length = 0;
    await svc.detach(A);
    assert.deepEqual(host.ops, ['del bridge cached', 'netns- berth-aaaaaaaaaaaa']);
    assert.equal(svc.attachment(A), undefined);
    assert.equal(store.networks.attachment(A), undefined);
    host.ops.length = 0;
    await svc.detach(A);
    await svc.detach(B);
    assert.deepEqual(host.ops, [], 'detach of nothing does nothing');
    const e = journal().filter((x) => x.action === 'connect' || x.action === 'disconnect');
    assert.deepEqual(
      e.map((x) => `${x.action} ${x.attributes['container'] === A}`),
      ['connect true', 'disconnect true', 'connect true', 'disconnect true'],
    );
  });

  it('a failed attach is undone and leaves no record', async () => {
    host.failAdd = true;
    await assert.rejects(svc.attach(A, 'bridge', { portMappings: [] }), /plugin failed/);
    assert.equal(store.networks.attachment(A), undefined);
    assert.equal(host.netns.size, 0);
    assert.equal(host.caches.size, 0);
    await assert.rejects(svc.attach(A, 'nope', { portMappings: [] }), (e) =>
      isBerthError(e, 'NETWORK_NOT_FOUND'),
    );
  });

  it('sweep undoes what a dead berthd left at any step, and keeps what it is told to', async () => {
    const C = 'c'.repeat(64);
    const D = 'd'.repeat(64);
    await svc.attach(A, 'bridge', { portMappings: [] });
    await svc.attach(B, 'bridge', { portMappings: [] });
    // C: berthd died after the record, before anything was made.
    store.networks.insertAttachment({
      containerId: C,
      networkId: svc.get('bridge').id,
      netns: 'berth-cccccccccccc',
      ifname: 'eth0',
      portMappings: [],
      createdAt: '2026-01-01T00:00:00Z',
      ip: '',
      prefixLen: 0,
      gateway: '',
      mac: '',
    });
    // D: a cache with no record (the record was deleted, the DEL never finished).
    host.caches.set(D, { ...(host.caches.get(A) as CniCache), containerId: D });
    host.netns.add('berth-dddddddddddd');
    // Another berthd's.
    host.netns.add('berth-eeeeeeeeeeee');
    // A bridge of a network whose removal was cut short.
    const E = 'f'.repeat(64);
    const n = await svc.create({ name: 'gone' });
    await svc.attach(E, 'gone', { portMappings: [] });
    await svc.detach(E);
    store.networks.delete(n.id);

    host.ops.length = 0;
    const fresh = make();
    await fresh.init();
    assert.equal(await fresh.sweep((id) => id === B), 3);
    assert.deepEqual(
      store.networks.attachments().map((a) => a.containerId),
      [B],
    );
    assert.deepEqual([...host.netns].sort(), ['berth-bbbbbbbbbbbb', 'berth-eeeeeeeeeeee']);
    assert.ok(host.ops.includes(`link- ${n.bridge}`), host.ops.join(', '));
    assert.deepEqual(readdirSync(join(dir, 'run', 'cni', 'bridges')), ['berth0']);
  });

  it('sweep keeps a bridge that still has ports on it', async () => {
    const n = await svc.create({ name: 'shared' });
    await svc.attach(A, 'shared', { portMappings: [] });
    await svc.detach(A);
    store.networks.delete(n.id);
    host.bridgePorts = async () => ['veth0'];
    await svc.sweep(() => false);
    assert.ok(host.links.has(n.bridge));
    assert.ok(existsSync(join(dir, 'run', 'cni', 'bridges', n.bridge)));
  });

  it('sweep removes rules whose bridge is gone, and only those', async () => {
    await svc.attach(A, 'bridge', { portMappings: [] });
    host.rules.add('bt-gone');
    await svc.sweep((id) => id === A);
    assert.deepEqual([...host.rules], ['berth0']);
  });

  it('sweep removes lease directories of networks that are gone', async () => {
    await mkdir(join(dir, 'run', 'cni', 'ipam', 'old'), { recursive: true });
    await writeFile(join(dir, 'run', 'cni', 'ipam', 'old', '10.214.0.2'), 'x');
    await mkdir(join(dir, 'run', 'cni', 'ipam', 'bridge'), { recursive: true });
    await svc.sweep(() => false);
    assert.deepEqual(readdirSync(join(dir, 'run', 'cni', 'ipam')), ['bridge']);
  });

  it('events: type network, filtered by network name or id', async () => {
    const n = await svc.create({ name: 'backend' });
    validateEventFilters({ type: ['network'], network: ['backend'] });
    const e = journal().find((x) => x.attributes['name'] === 'backend');
    assert.ok(e);
    assert.equal(e.actorId, n.id);
    assert.ok(matchEvent(e, { type: ['network'] }));
    assert.ok(matchEvent(e, { network: ['backend'] }));
    assert.ok(matchEvent(e, { network: [n.id.slice(0, 8)] }));
    assert.ok(!matchEvent(e, { network: ['bridge'] }));
    assert.ok(!matchEvent(e, { type: ['volume'] }));
  });

  it("views: docker's inspect and ls fields", async () => {
    const n = await svc.create({ name: 'backend', subnet: '10.99.0.0/24', labels: { a: 'b' } });
    await svc.attach(A, 'backend', { portMappings: [] });
    const v = networkView(n, svc.attachments('backend'), () => 'web');
    assert.deepEqual(v.IPAM.Config, [{ Subnet: '10.99.0.0/24', Gateway: '10.99.0.1' }]);
    assert.equal(v.Driver, 'bridge');
    assert.deepEqual(v.Labels, { a: 'b' });
    assert.equal(v.Containers[A]?.Name, 'web');
    assert.match(v.Containers[A]?.IPv4Address ?? '', /^10\.213\.0\.\d+\/16$/);
    assert.equal(v.Options['com.docker.network.bridge.name'], n.bridge);
    const r = networkRow(v);
    assert.equal(r['ID'], n.id.slice(0, 12));
    assert.equal(r['Subnet'], '10.99.0.0/24');
    assert.equal(r['Labels'], 'a=b');
  });
});
