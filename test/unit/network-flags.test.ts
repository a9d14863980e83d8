import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import {
  addNetworkOptions,
  networkRequest,
  parseAddHost,
  parseNamedPort,
  parsePublish,
  type NetworkFlags,
} from '../../src/cli/network-flags.ts';
import { isBerthError } from '../../src/util/errors.ts';

function rejects(fn: () => unknown, field: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isBerthError(e, 'INVALID_ARGUMENT'), `INVALID_ARGUMENT, got ${String(e)}`);
    assert.equal(e.details?.['field'], field);
    assert.match(e.message, new RegExp(`^Invalid ${field}: `));
    if (message) assert.match(e.message, message);
    return true;
  });
}

const tcp = (containerPort: number, over: object = {}) => ({
  containerPort,
  protocol: 'tcp',
  hostIP: '',
  ...over,
});

describe('-p, as docker parses it', () => {
  const cases: [string, object[]][] = [
    ['80', [tcp(80)]],
    ['80/tcp', [tcp(80)]],
    ['80/', [tcp(80)]],
    ['53/udp', [{ containerPort: 53, protocol: 'udp', hostIP: '' }]],
    ['53/UDP', [{ containerPort: 53, protocol: 'udp', hostIP: '' }]],
    ['8080:80', [tcp(80, { hostPort: 8080 })]],
    ['8080:80/udp', [{ containerPort: 80, protocol: 'udp', hostIP: '', hostPort: 8080 }]],
    ['0:80', [tcp(80)]],
    ['127.0.0.1::80', [tcp(80, { hostIP: '127.0.0.1' })]],
    ['127.0.0.1:8080:80', [tcp(80, { hostIP: '127.0.0.1', hostPort: 8080 })]],
    ['[::1]:8080:80', [tcp(80, { hostIP: '::1', hostPort: 8080 })]],
    ['[::1]::80', [tcp(80, { hostIP: '::1' })]],
    ['::1:8080:80', [tcp(80, { hostIP: '::1', hostPort: 8080 })]],
    [
      '8000-8002:9000-9002',
      [tcp(9000, { hostPort: 8000 }), tcp(9001, { hostPort: 8001 }), tcp(9002, { hostPort: 8002 })],
    ],
    [
      '9000-9001/udp',
      [
        { containerPort: 9000, protocol: 'udp', hostIP: '' },
        { containerPort: 9001, protocol: 'udp', hostIP: '' },
      ],
    ],
    ['8000-8010:80', [tcp(80, { hostPort: 8000, hostPortEnd: 8010 })]],
    ['8000-8000:80', [tcp(80, { hostPort: 8000 })]],
  ];
  for (const [spec, want] of cases) {
    it(spec, () => assert.deepEqual(parsePublish(spec), want));
  }

  const bad: [string, RegExp][] = [
    ['', /no container port/],
    ['8080:', /no container port/],
    ['127.0.0.1:80', /"127\.0\.0\.1" is not a host port/],
    ['localhost:8080:80', /"localhost" is not an IP/],
    ['[::1:8080:80', /not an IP/],
    ['80/sctp', /protocol "sctp" is not tcp or udp/],
    ['80/tcp/x', /is not \[IP:\]/],
    ['70000', /not a port/],
    ['0', /not a port/],
    ['abc', /not a port/],
    ['80-70', /not a port or a range/],
    ['8000-8001:9000-9002', /differ/],
    ['x:80', /not a host port/],
    ['0-10:80', /starts at 1/],
  ];
  for (const [spec, msg] of bad) {
    it(`rejects "${spec}"`, () => rejects(() => parsePublish(spec), 'publish', msg));
  }
});

describe('--port', () => {
  it('parses NAME[:CONTAINERPORT][/PROTO]', () => {
    assert.deepEqual(parseNamedPort('http'), { name: 'http', protocol: 'tcp', hostIP: '' });
    assert.deepEqual(parseNamedPort('http:8080'), {
      name: 'http',
      protocol: 'tcp',
      hostIP: '',
      containerPort: 8080,
    });
    assert.deepEqual(parseNamedPort('dns/udp'), { name: 'dns', protocol: 'udp', hostIP: '' });
    assert.deepEqual(parseNamedPort('dns_2:53/udp'), {
      name: 'dns_2',
      protocol: 'udp',
      hostIP: '',
      containerPort: 53,
    });
  });

  it('rejects bad names, ports and protocols', () => {
    for (const bad of [
      'HTTP',
      '1http',
      '',
      ':80',
      'my-port',
      'http:',
      'http:0',
      'http:x',
      'http/sctp',
    ])
      rejects(() => parseNamedPort(bad), 'port');
  });
});

describe('--add-host', () => {
  it('takes NAME:IP, NAME=IP, IPv6 and host-gateway, given on as NAME:IP', () => {
    assert.equal(parseAddHost('db:10.0.0.5'), 'db:10.0.0.5');
    assert.equal(parseAddHost('db=10.0.0.5'), 'db:10.0.0.5');
    assert.equal(parseAddHost('v6:2001:db8::1'), 'v6:2001:db8::1');
    assert.equal(parseAddHost('v6=[2001:db8::1]'), 'v6:2001:db8::1');
    assert.equal(
      parseAddHost('host.docker.internal:host-gateway'),
      'host.docker.internal:host-gateway',
    );
  });

  it('rejects what is not HOST:IP', () => {
    for (const bad of ['db', 'db:', 'db:example.com', ':1.2.3.4', 'a b:1.2.3.4'])
      rejects(() => parseAddHost(bad), 'add-host');
  });
});

const none: NetworkFlags = { publish: [], port: [], addHost: [], dns: [], dnsSearch: [] };

describe('networkRequest', () => {
  it('gives no fields for no flags', () => {
    assert.deepEqual(networkRequest(none), {});
  });

  it('gives -p ports first, then named ports, and the DNS fields', () => {
    assert.deepEqual(
      networkRequest({
        publish: ['127.0.0.1::80'],
        publishAll: true,
        port: ['http', 'metrics:9100'],
        addHost: ['gw:host-gateway'],
        dns: ['1.1.1.1'],
        dnsSearch: ['corp.example', '.'],
      }),
      {
        ports: [
          tcp(80, { hostIP: '127.0.0.1' }),
          { name: 'http', protocol: 'tcp', hostIP: '' },
          { name: 'metrics', protocol: 'tcp', hostIP: '', containerPort: 9100 },
        ],
        publishAll: true,
        extraHosts: ['gw:host-gateway'],
        dns: ['1.1.1.1'],
        dnsSearch: ['corp.example', '.'],
      },
    );
  });

  it('names the flag of a bad value', () => {
    rejects(() => networkRequest({ ...none, port: ['a', 'a:80'] }), 'port', /more than once/);
    rejects(() => networkRequest({ ...none, dns: ['dns.example'] }), 'dns');
    rejects(() => networkRequest({ ...none, dnsSearch: ['-bad-'] }), 'dns-search');
    rejects(() => networkRequest({ ...none, publish: ['80/sctp'] }), 'publish');
  });

  it('parses through commander', () => {
    const c = addNetworkOptions(new Command().exitOverride());
    c.parse(
      [
        '-p',
        '8080:80',
        '-p',
        '53/udp',
        '-P',
        '--port',
        'http',
        '--add-host',
        'db:10.0.0.5',
        '--dns',
        '9.9.9.9',
        '--dns-search',
        'corp.example',
      ],
      { from: 'user' },
    );
    const f = c.opts<NetworkFlags>();
    assert.deepEqual(f, {
      publish: ['8080:80', '53/udp'],
      publishAll: true,
      port: ['http'],
      addHost: ['db:10.0.0.5'],
      dns: ['9.9.9.9'],
      dnsSearch: ['corp.example'],
    });
    assert.equal(networkRequest(f).ports?.length, 3);
  });
});
