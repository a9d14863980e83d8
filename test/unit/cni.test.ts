// The CNI runtime without the kernel: the configuration each plugin gets, the spec's
// errors, the cache DEL relies on, berth's chain, and the host's routes.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { masqueradeRule, parseMasqueradeRules } from '../../src/network/netns.ts';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  addressOf,
  bridgeConfList,
  Cni,
  loopbackConfList,
  parsePluginOutput,
  pluginConfig,
  type CniCache,
  type CniResult,
  type Exec,
} from '../../src/network/cni.ts';
import {
  parseProcRoutes,
  parsePublishedPortsRules,
  publishedPortsRule,
} from '../../src/network/netns.ts';
import { isBerthError } from '../../src/util/errors.ts';
import type { ExecOptions } from '../../src/util/exec.ts';

const RESULT: CniResult = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'brth-1a2b3c4d', mac: '0e:91:e7:c5:a0:0c' },
    { name: 'veth8455dfb6', mac: '5e:33:10:4d:51:09' },
    { name: 'eth0', mac: 'de:70:bf:a0:de:c2', sandbox: '/run/netns/berth-0123456789ab' },
  ],
  ips: [{ interface: 2, address: '10.214.0.2/24', gateway: '10.214.0.1' }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

const list = bridgeConfList({
  name: 'backend',
  bridge: 'brth-1a2b3c4d',
  subnet: '10.214.0.0/24',
  gateway: '10.214.0.1',
  ipamDataDir: '/run/berth/cni/ipam',
});

describe('plugin configuration', () => {
  it('gives each plugin the name, version, prevResult and only its capabilities', () => {
    const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };
    const [bridge, portmap, firewall] = list.plugins;
    assert.ok(bridge && portmap && firewall);
    const b = pluginConfig(list, bridge, caps, undefined);
    assert.equal(b['name'], 'backend');
    assert.equal(b['cniVersion'], '1.0.0');
    assert.equal(b['type'], 'bridge');
    assert.ok(!('prevResult' in b));
    assert.ok(!('runtimeConfig' in b), 'bridge declares no capability');
    const p = pluginConfig(list, portmap, caps, RESULT);
    assert.deepEqual(p['runtimeConfig'], caps);
    assert.deepEqual(p['prevResult'], RESULT);
    assert.equal(p['snat'], true);
    const f = pluginConfig(list, firewall, caps, RESULT);
    assert.ok(!('runtimeConfig' in f));
    assert.equal(f['backend'], 'iptables');
  });

  it("berth's chain: bridge with host-local under the run root, portmap, firewall", () => {
    assert.deepEqual(
      list.plugins.map((p) => p.type),
      ['bridge', 'portmap', 'firewall'],
    );
    const b = list.plugins[0] as Record<string, unknown>;
    assert.equal(b['isGateway'], true);
    assert.equal(b['ipMasq'], false, 'one masquerade rule per network instead');
    assert.equal(b['hairpinMode'], true);
    assert.deepEqual(b['ipam'], {
      type: 'host-local',
      ranges: [[{ subnet: '10.214.0.0/24', gateway: '10.214.0.1' }]],
      routes: [{ dst: '0.0.0.0/0' }],
      dataDir: '/run/berth/cni/ipam',
    });
    assert.deepEqual(list.plugins[1]?.capabilities, { portMappings: true });
    assert.deepEqual(loopbackConfList().plugins, [{ type: 'loopback' }]);
  });
});

describe('plugin output', () => {
  it('parses a result', () => {
    const r = parsePluginOutput('bridge', 'ADD', {
      code: 0,
      stdout: JSON.stringify(RESULT),
      stderr: '',
    });
    assert.deepEqual(r, RESULT);
    assert.equal(
      parsePluginOutput('bridge', 'DEL', { code: 0, stdout: '', stderr: '' }),
      undefined,
    );
  });

  it("turns the spec's error object into RUNTIME_FAILED with the plugin's message", () => {
    assert.throws(
      () =>
        parsePluginOutput('bridge', 'ADD', {
          code: 1,
          stdout: JSON.stringify({
            code: 7,
            msg: 'invalid subnet',
            details: 'bogus is not a CIDR',
          }),
          stderr: '',
        }),
      (e) =>
        isBerthError(e, 'RUNTIME_FAILED') &&
        e.message ===
          'CNI plugin bridge ADD failed: invalid subnet: bogus is not a CIDR (invalid network config)' &&
        e.details?.['cniCode'] === 7,
    );
    assert.throws(
      () =>
        parsePluginOutput('portmap', 'ADD', {
          code: 1,
          stdout: '{"code":999,"msg":"failed to open netns"}',
          stderr: '',
        }),
      /^BerthError: CNI plugin portmap ADD failed: failed to open netns$/,
    );
    assert.throws(
      () => parsePluginOutput('firewall', 'DEL', { code: 2, stdout: '', stderr: 'panic: boom' }),
      /CNI plugin firewall DEL failed: panic: boom/,
    );
    assert.throws(
      () => parsePluginOutput('bridge', 'ADD', { code: 0, stdout: 'not json', stderr: '' }),
      /gave no result/,
    );
  });

  it("finds the container's address, MAC and host veth", () => {
    assert.deepEqual(addressOf(RESULT, 'eth0'), {
      ip: '10.214.0.2',
      prefixLen: 24,
      gateway: '10.214.0.1',
      mac: 'de:70:bf:a0:de:c2',
      hostVeth: 'veth8455dfb6',
    });
    assert.throws(() => addressOf({ cniVersion: '1.0.0', ips: [] }, 'eth0'), /no IPv4 address/);
  });
});

describe('host routes', () => {
  it('reads /proc/net/route, defaults left out', () => {
    const text = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'cni-podman0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
      'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      '',
    ].join('\n');
    assert.deepEqual(parseProcRoutes(text), [
      { iface: 'cni-podman0', dst: '10.88.0.0/16' },
      { iface: 'eth0', dst: '192.0.2.0/24' },
    ]);
  });

  it("finds berth's rules in iptables -S", () => {
    const text = [
      '-N CNI-ADMIN',
      '-A CNI-ADMIN -o berth0 -m conntrack --ctstate DNAT -m comment --comment "berth published ports on berth0" -j ACCEPT',
      '-A CNI-ADMIN -o brth-1a2b3c4d -m conntrack --ctstate DNAT -m comment --comment "berth published ports on brth-1a2b3c4d" -j ACCEPT',
      '-A CNI-ADMIN -o berth0 -m conntrack --ctstate DNAT -m comment --comment "berth published ports on berth0" -j ACCEPT',
      '-A CNI-ADMIN -o cni0 -j ACCEPT',
      '',
    ].join('\n');
    assert.deepEqual(parsePublishedPortsRules(text), ['berth0', 'brth-1a2b3c4d']);
  });

  it('accepts only DNATed connections to a bridge', () => {
    assert.deepEqual(publishedPortsRule('berth0').slice(0, 6), [
      '-o',
      'berth0',
      '-m',
      'conntrack',
      '--ctstate',
      'DNAT',
    ]);
  });
});

// Plugins that answer as the real ones do, recording what they were given.
interface Call {
  plugin: string;
  command: string;
  env: NodeJS.ProcessEnv;
  conf: Record<string, unknown>;
}

function fakePlugins(calls: Call[], failOn?: string): Exec {
  return async (argv: readonly string[], opts: ExecOptions) => {
    const plugin = basename(argv[0] ?? '');
    const conf = JSON.parse(opts.input ?? '{}') as Record<string, unknown>;
    const command = opts.env?.['CNI_COMMAND'] ?? '';
    calls.push({ plugin, command, env: opts.env ?? {}, conf });
    if (failOn === `${plugin} ${command}`)
      return { code: 1, stdout: '{"code":999,"msg":"iptables: no chain"}', stderr: '' };
    if (command !== 'ADD') return { code: 0, stdout: '', stderr: '' };
    const out = plugin === 'bridge' ? RESULT : (conf['prevResult'] ?? { cniVersion: '1.0.0' });
    return { code: 0, stdout: JSON.stringify(out), stderr: '' };
  };
}

describe('Cni', () => {
  let dir: string;
  let plugins: string;
  let cacheDir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-cni-'));
    plugins = join(dir, 'plugins');
    cacheDir = join(dir, 'results');
    mkdirSync(plugins);
    for (const p of ['bridge', 'portmap', 'firewall', 'loopback'])
      writeFileSync(join(plugins, p), '', { mode: 0o755 });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const rt = {
    containerId: 'c'.repeat(64),
    netns: '/run/netns/berth-cccccccccccc',
    ifname: 'eth0',
    capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
  };
  const cachePath = () => join(cacheDir, `${'c'.repeat(64)}-eth0.json`);

  it('ADD runs the chain in order, passing each result on; DEL in reverse with the cache', async () => {
    const calls: Call[] = [];
    const cni = new Cni({ pluginDirs: [plugins], cacheDir, exec: fakePlugins(calls) });
    const r = await cni.add(list, rt);
    assert.deepEqual(r, RESULT);
    assert.deepEqual(
      calls.map((c) => `${c.plugin} ${c.command}`),
      ['bridge ADD', 'portmap ADD', 'firewall ADD'],
    );
    assert.equal(calls[0]?.env['CNI_CONTAINERID'], rt.containerId);
    assert.equal(calls[0]?.env['CNI_NETNS'], rt.netns);
    assert.equal(calls[0]?.env['CNI_IFNAME'], 'eth0');
    assert.equal(calls[0]?.env['CNI_PATH'], plugins);
    assert.deepEqual(calls[2]?.conf['prevResult'], RESULT);
    const cache = JSON.parse(readFileSync(cachePath(), 'utf8')) as CniCache;
    assert.deepEqual(cache.result, RESULT);
    assert.deepEqual(cache.capabilityArgs, rt.capabilityArgs);

    calls.length = 0;
    // No list and no capability args given: DEL has everything from the cache.
    await cni.del({ containerId: rt.containerId, netns: rt.netns, ifname: 'eth0' });
    assert.deepEqual(
      calls.map((c) => `${c.plugin} ${c.command}`),
      ['firewall DEL', 'portmap DEL', 'bridge DEL'],
    );
    for (const c of calls) assert.deepEqual(c.conf['prevResult'], RESULT);
    assert.deepEqual(calls[1]?.conf['runtimeConfig'], rt.capabilityArgs);
    assert.ok(!existsSync(cachePath()), 'the cache goes with a DEL that worked');

    calls.length = 0;
    await cni.del(rt);
    assert.equal(calls.length, 0, 'no cache and no list: nothing to do');
  });

  it('keeps what a failed ADD did in the cache, for the DEL after it', async () => {
    const calls: Call[] = [];
    const cni = new Cni({
      pluginDirs: [plugins],
      cacheDir,
      exec: fakePlugins(calls, 'firewall ADD'),
    });
    await assert.rejects(cni.add(list, rt), /CNI plugin firewall ADD failed: iptables: no chain/);
    const cache = await cni.cached(rt.containerId, 'eth0');
    assert.deepEqual(cache?.result, RESULT, 'the result portmap passed on');
    assert.deepEqual(await cni.cachedIds('eth0'), [rt.containerId]);
  });

  it('caches the runtime config before the first plugin runs', async () => {
    let seen: CniCache | undefined;
    const cni: Cni = new Cni({
      pluginDirs: [plugins],
      cacheDir,
      exec: async () => {
        seen = await cni.cached(rt.containerId, 'eth0');
        // berthd dies here: the plugin never answers.
        return new Promise(() => undefined);
      },
    });
    void cni.add(list, rt);
    while (seen === undefined) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seen.capabilityArgs, rt.capabilityArgs);
    assert.equal(seen.result, undefined);
  });

  it('DEL asks every plugin even when one fails, and keeps the cache', async () => {
    const calls: Call[] = [];
    const cni = new Cni({ pluginDirs: [plugins], cacheDir, exec: fakePlugins(calls) });
    await cni.add(list, rt);
    calls.length = 0;
    const failing = new Cni({
      pluginDirs: [plugins],
      cacheDir,
      exec: fakePlugins(calls, 'portmap DEL'),
    });
    await assert.rejects(failing.del(rt), /portmap DEL failed/);
    assert.deepEqual(
      calls.map((c) => c.plugin),
      ['firewall', 'portmap', 'bridge'],
    );
    assert.ok(existsSync(cachePath()));
  });

  it('DEL without a cache uses the list and runtime config given, without prevResult', async () => {
    const calls: Call[] = [];
    const cni = new Cni({ pluginDirs: [plugins], cacheDir, exec: fakePlugins(calls) });
    await cni.del(rt, list);
    assert.deepEqual(
      calls.map((c) => `${c.plugin} ${c.command}`),
      ['firewall DEL', 'portmap DEL', 'bridge DEL'],
    );
    assert.ok(!('prevResult' in (calls[0]?.conf ?? {})));
    assert.deepEqual(calls[1]?.conf['runtimeConfig'], rt.capabilityArgs);
  });

  it('names a missing plugin and the package', async () => {
    const cni = new Cni({ pluginDirs: [join(dir, 'none')], cacheDir, exec: fakePlugins([]) });
    await assert.rejects(
      cni.add(list, rt),
      /CNI plugin bridge ADD failed: no such plugin in .*none \(install containernetworking-plugins\)/,
    );
  });
});

describe('masquerade rules', () => {
  it("finds a bridge's masquerade rules in iptables -S output, as arguments", () => {
    const text = [
      '-P POSTROUTING ACCEPT',
      '-A POSTROUTING -s 10.9.0.0/24 ! -o br1 -m comment --comment "berth masquerade br1" -j MASQUERADE',
      '-A POSTROUTING -s 10.8.0.0/24 ! -o br2 -m comment --comment "berth masquerade br2" -j MASQUERADE',
    ].join('\n');
    assert.deepEqual(parseMasqueradeRules(text, 'br1'), [masqueradeRule('br1', '10.9.0.0/24')]);
    assert.deepEqual(parseMasqueradeRules(text, 'br3'), []);
  });
});
