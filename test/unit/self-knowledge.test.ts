import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  networkDocument,
  networkEnv,
  networkJson,
  ownIP,
  portAddress,
  portKey,
  type SelfKnowledgeInput,
} from '../../src/network/self-knowledge.ts';
import {
  HostAddress,
  defaultRouteDevice,
  parseAdvertiseIP,
  primaryIPv4,
  type RunCommand,
} from '../../src/network/host-address.ts';
import type { PortBinding } from '../../src/types/ports.ts';
import { isBerthError } from '../../src/util/errors.ts';

const HTTP: PortBinding = {
  name: 'http',
  containerPort: 20123,
  protocol: 'tcp',
  hostIP: '',
  hostPort: 20123,
};
const ADMIN: PortBinding = {
  name: 'admin_ui',
  containerPort: 9000,
  protocol: 'tcp',
  hostIP: '0.0.0.0',
  hostPort: 20456,
};
const WEB: PortBinding = {
  name: '',
  containerPort: 80,
  protocol: 'tcp',
  hostIP: '127.0.0.1',
  hostPort: 32001,
};
const WEB_AGAIN: PortBinding = { ...WEB, hostIP: '', hostPort: 8080 };
const DNS: PortBinding = {
  name: '',
  containerPort: 53,
  protocol: 'udp',
  hostIP: '::1',
  hostPort: 5353,
};

const bridge = (bindings: PortBinding[]): SelfKnowledgeInput => ({
  mode: 'bridge',
  hostIP: '192.0.2.2',
  containerIP: '10.88.0.4',
  bindings,
});

describe('self-knowledge', () => {
  it('tells a bridge container its ports by name and by container port', () => {
    assert.deepEqual(networkEnv(bridge([WEB, HTTP, ADMIN, DNS])), [
      'PORT=20123',
      'BERTH_HOST_IP=192.0.2.2',
      'BERTH_IP=10.88.0.4',
      'BERTH_PORT_80_TCP=80',
      'BERTH_HOST_PORT_80_TCP=32001',
      'BERTH_ADDR_80_TCP=127.0.0.1:32001',
      'BERTH_PORT_HTTP=20123',
      'BERTH_HOST_PORT_HTTP=20123',
      'BERTH_ADDR_HTTP=192.0.2.2:20123',
      'BERTH_PORT_ADMIN_UI=9000',
      'BERTH_HOST_PORT_ADMIN_UI=20456',
      'BERTH_ADDR_ADMIN_UI=192.0.2.2:20456',
      'BERTH_PORT_53_UDP=53',
      'BERTH_HOST_PORT_53_UDP=5353',
      'BERTH_ADDR_53_UDP=[::1]:5353',
    ]);
  });

  it('leaves PORT unset without a named port', () => {
    const env = networkEnv(bridge([WEB]));
    assert.ok(!env.some((e) => e.startsWith('PORT=')));
    assert.deepEqual(networkEnv(bridge([])), ['BERTH_HOST_IP=192.0.2.2', 'BERTH_IP=10.88.0.4']);
  });

  it('keys a port published twice by its first binding only; the JSON lists both', () => {
    const env = networkEnv(bridge([WEB, WEB_AGAIN]));
    assert.equal(env.filter((e) => e.startsWith('BERTH_HOST_PORT_80_TCP=')).length, 1);
    assert.ok(env.includes('BERTH_HOST_PORT_80_TCP=32001'));
    const doc = networkDocument(bridge([WEB, WEB_AGAIN]));
    assert.deepEqual(
      doc.ports.map((p) => [p.key, p.address]),
      [
        ['80_TCP', '127.0.0.1:32001'],
        ['', '192.0.2.2:8080'],
      ],
    );
  });

  it('gives the own address by mode', () => {
    const k = bridge([]);
    assert.equal(ownIP(k), '10.88.0.4');
    assert.equal(ownIP({ ...k, mode: 'container' }), '10.88.0.4');
    assert.equal(ownIP({ ...k, mode: 'host' }), '192.0.2.2');
    assert.equal(ownIP({ ...k, mode: 'none' }), '127.0.0.1');
  });

  it('tells a host-mode container the port to bind, and the host as its address', () => {
    const env = networkEnv({
      mode: 'host',
      hostIP: '192.0.2.2',
      containerIP: '',
      bindings: [HTTP],
    });
    assert.deepEqual(env, [
      'PORT=20123',
      'BERTH_HOST_IP=192.0.2.2',
      'BERTH_IP=192.0.2.2',
      'BERTH_PORT_HTTP=20123',
      'BERTH_HOST_PORT_HTTP=20123',
      'BERTH_ADDR_HTTP=192.0.2.2:20123',
    ]);
  });

  it('derives keys and addresses', () => {
    assert.equal(portKey(HTTP), 'HTTP');
    assert.equal(portKey(DNS), '53_UDP');
    assert.equal(portAddress({ ...WEB, hostIP: '::' }, '2001:db8::2'), '[2001:db8::2]:32001');
  });

  it('writes network.json in its schema', () => {
    const text = networkJson(bridge([HTTP, WEB]));
    assert.ok(text.endsWith('}\n'));
    assert.deepEqual(JSON.parse(text), {
      mode: 'bridge',
      hostIP: '192.0.2.2',
      ip: '10.88.0.4',
      ports: [
        {
          name: 'http',
          key: 'HTTP',
          containerPort: 20123,
          hostPort: 20123,
          hostIP: '',
          protocol: 'tcp',
          address: '192.0.2.2:20123',
        },
        {
          name: '',
          key: '80_TCP',
          containerPort: 80,
          hostPort: 32001,
          hostIP: '127.0.0.1',
          protocol: 'tcp',
          address: '127.0.0.1:32001',
        },
      ],
    });
  });
});

// Output of iproute2 6.x.
const ROUTES = JSON.stringify([
  { dst: 'default', gateway: '10.1.0.1', dev: 'wlan0', metric: 600, flags: [] },
  { dst: 'default', gateway: '192.0.2.1', dev: 'eth0', metric: 100, flags: [] },
  { dst: 'default', gateway: '172.16.0.1', dev: 'eth9', flags: ['linkdown'] },
]);
const ADDRS = JSON.stringify([
  {
    ifindex: 4,
    ifname: 'eth0',
    addr_info: [
      { family: 'inet6', local: 'fd00::2', prefixlen: 64, scope: 'global' },
      { family: 'inet', local: '169.254.7.7', prefixlen: 16, scope: 'link' },
      { family: 'inet', local: '192.0.2.2', prefixlen: 24, scope: 'global', label: 'eth0' },
      { family: 'inet', local: '192.0.2.3', prefixlen: 24, scope: 'global', secondary: true },
    ],
  },
]);

function fakeIp(routes: string, addrs: string, calls: string[][] = []): RunCommand {
  return async (argv) => {
    calls.push([...argv]);
    if (argv.includes('route')) return { stdout: routes };
    if (argv.includes('addr')) return { stdout: addrs };
    throw new Error(`unexpected ${argv.join(' ')}`);
  };
}

describe('host address', () => {
  it('picks the default route with the lowest metric whose link is up', () => {
    assert.equal(defaultRouteDevice(ROUTES), 'eth0');
    assert.equal(defaultRouteDevice('[]'), undefined);
    assert.equal(defaultRouteDevice('not json'), undefined);
  });

  it('picks the first global primary IPv4 address', () => {
    assert.equal(primaryIPv4(ADDRS), '192.0.2.2');
    assert.equal(primaryIPv4('[{"ifname":"eth0","addr_info":[]}]'), undefined);
  });

  it('uses the default route’s interface, and caches it until refreshed', async () => {
    const calls: string[][] = [];
    const h = new HostAddress({ run: fakeIp(ROUTES, ADDRS, calls) });
    assert.equal(h.cached(), undefined);
    const [a, b] = await Promise.all([h.get(), h.get()]);
    assert.equal(a, '192.0.2.2');
    assert.equal(b, '192.0.2.2');
    assert.deepEqual(calls, [
      ['ip', '-j', 'route', 'show', 'default'],
      ['ip', '-j', 'addr', 'show', 'dev', 'eth0'],
    ]);
    await h.get();
    assert.equal(calls.length, 2, 'cached');
    assert.deepEqual(await h.refresh(), {
      ip: '192.0.2.2',
      source: 'default-route',
      device: 'eth0',
    });
    assert.equal(calls.length, 4);
  });

  it('prefers --advertise-ip and never runs ip then', async () => {
    const calls: string[][] = [];
    const h = new HostAddress({ advertiseIP: '203.0.113.7', run: fakeIp(ROUTES, ADDRS, calls) });
    assert.equal(await h.get(), '203.0.113.7');
    assert.deepEqual(h.cached(), { ip: '203.0.113.7', source: 'advertise-ip' });
    assert.deepEqual(calls, []);
  });

  it('falls back to 127.0.0.1 without a default route, an address, or ip itself', async () => {
    assert.equal(await new HostAddress({ run: fakeIp('[]', ADDRS) }).get(), '127.0.0.1');
    assert.deepEqual(await new HostAddress({ run: fakeIp(ROUTES, '[]') }).refresh(), {
      ip: '127.0.0.1',
      source: 'fallback',
      device: 'eth0',
    });
    const broken: RunCommand = async () => {
      throw new Error('spawn ip ENOENT');
    };
    assert.equal(await new HostAddress({ run: broken }).get(), '127.0.0.1');
  });

  it('validates --advertise-ip', () => {
    assert.equal(parseAdvertiseIP(' 2001:db8::1 '), '2001:db8::1');
    for (const bad of ['', 'host.example', '0.0.0.0', '::', '10.0.0.300']) {
      assert.throws(
        () => parseAdvertiseIP(bad),
        (e: unknown) => isBerthError(e, 'INVALID_ARGUMENT') && /advertise-ip/.test(e.message),
        bad,
      );
    }
    assert.throws(() => new HostAddress({ advertiseIP: 'nope' }), /advertise-ip/);
  });
});
