// Bridge networks for real: the CLI against a berthd, then NetworkService in this process
// on a temporary store and run root, with real namespaces, CNI plugins and iptables. It
// sends traffic only to loopback and to the namespaces and bridges it made, and after each
// detach and each crash it looks for what could be left: netns, veth, iptables rules
// naming the container or its address, leases.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, TestDaemon, waitFor } from '../helpers/daemon.ts';
import { EventBus } from '../../src/engine/events.ts';
import {
  hostNetworkHost,
  netnsNameOf,
  NetworkService,
  parseCidr,
  cidrOverlaps,
  type NetworkHost,
} from '../../src/engine/networks.ts';
import { Cni } from '../../src/network/cni.ts';
import { parseProcRoutes, removePublishedPortsRule } from '../../src/network/netns.ts';
import { Store } from '../../src/store/index.ts';
import type { NetworkInspect } from '../../src/types/network.ts';
import { execFile, type ExecOptions } from '../../src/util/exec.ts';
import { newId } from '../../src/util/ids.ts';
import { silentLogger } from '../../src/util/logger.ts';

const rand = () => Math.floor(Math.random() * 0x10000);
const tag = `${process.pid.toString(16)}${rand().toString(16)}`.slice(-6);

// A /24 in 10.240.0.0/12 that no route on the host covers.
function freeSubnet(): string {
  const routes = parseProcRoutes(readFileSync('/proc/net/route', 'utf8'))
    .map((r) => parseCidr(r.dst))
    .filter((c) => c !== undefined);
  for (;;) {
    const s = `10.${240 + (rand() % 16)}.${rand() % 256}.0/24`;
    const c = parseCidr(s);
    if (c && !routes.some((r) => cidrOverlaps(r, c))) return s;
  }
}

async function sh(argv: string[]): Promise<string> {
  const r = await runCommand(argv[0] ?? '', argv.slice(1));
  return r.stdout + r.stderr;
}

const iptablesSave = () => sh(['iptables-save']);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  await new Promise((r) => srv.close(r));
  return typeof addr === 'object' && addr ? addr.port : 0;
}

describe('berth network: the CLI', () => {
  let d: TestDaemon;
  const net = `it-${tag}`;
  const subnet = freeSubnet();

  before(async () => {
    d = await TestDaemon.start(['--bridge-name', `brt-${tag}`, '--bridge-subnet', freeSubnet()]);
  });
  after(async () => {
    await d.berth(['network', 'rm', net, `${net}-auto`]).catch(() => undefined);
    await d.destroy();
  });

  const inspect = async (n: string) =>
    (
      JSON.parse(await d.berthOk(['network', 'inspect', n])) as NetworkInspect[]
    )[0] as NetworkInspect;

  it('lists the default network, bridge', async () => {
    const out = await d.berthOk(['network', 'ls']);
    assert.match(out, /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE\s+SUBNET\n/);
    assert.match(out, /\sbridge\s+bridge\s+local\s/);
    const b = await inspect('bridge');
    assert.equal(b.Options['com.docker.network.bridge.name'], `brt-${tag}`);
  });

  it('creates, lists, inspects and removes a network', async () => {
    const id = (
      await d.berthOk(['network', 'create', '--subnet', subnet, '--label', 'team=pay', net])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    const n = await inspect(net);
    assert.equal(n.Id, id);
    assert.equal(n.Driver, 'bridge');
    assert.deepEqual(n.IPAM.Config, [{ Subnet: subnet, Gateway: subnet.replace(/0\/24$/, '1') }]);
    assert.deepEqual(n.Labels, { team: 'pay' });
    assert.deepEqual(n.Containers, {});
    assert.ok((await d.berthOk(['network', 'ls', '-q'])).split('\n').includes(id.slice(0, 12)));
    assert.match(
      await d.berthOk(['network', 'ls', '--format', '{{.Name}} {{.Subnet}}']),
      new RegExp(`^${net} ${subnet.replace(/\./g, '\\.')}$`, 'm'),
    );
    assert.equal((await inspect(id.slice(0, 10))).Name, net, 'by id prefix');

    const auto = (await d.berthOk(['network', 'create', `${net}-auto`])).trim();
    assert.match((await inspect(auto)).IPAM.Config[0]?.Subnet ?? '', /^10\.214\.\d+\.0\/24$/);

    assert.equal(await d.berthOk(['network', 'rm', net, `${net}-auto`]), `${net}\n${net}-auto\n`);
    const r = await d.berth(['network', 'inspect', net]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No such network/);
    const ev = (await d.berthOk(['events', '--format', 'json', '--filter', `network=${net}`]))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { action: string; actorId: string });
    assert.deepEqual(
      ev.map((e) => e.action),
      ['create', 'destroy'],
    );
    assert.equal(ev[0]?.actorId, id);
  });

  it('refuses a bad subnet with 125, naming the field', async () => {
    for (const bad of ['10.1.2.3/24', 'nope', '10.0.0.0/31', 'fd00::/64']) {
      const r = await d.berth(['network', 'create', '--subnet', bad, `${net}-bad`]);
      assert.equal(r.code, 125, bad);
      assert.match(r.stderr, /^Error: Invalid subnet: /, bad);
    }
    const r = await d.berth([
      'network',
      'create',
      '--subnet',
      subnet,
      '--gateway',
      '192.0.2.1',
      `${net}-bad`,
    ]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Invalid gateway: 192\.0\.2\.1 is not in the subnet/);
  });

  it('refuses an overlapping subnet and a taken name', async () => {
    await d.berthOk(['network', 'create', '--subnet', subnet, net]);
    const half = subnet.replace(/0\/24$/, '128/25');
    const r = await d.berth(['network', 'create', '--subnet', half, `${net}-2`]);
    assert.equal(r.code, 125);
    assert.match(
      r.stderr,
      new RegExp(`overlaps network ${net} \\(${subnet.replace(/\./g, '\\.')}\\)`),
    );
    const again = await d.berth(['network', 'create', net]);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /already exists/);
    await d.berthOk(['network', 'rm', net]);
  });

  it('refuses to remove the default network', async () => {
    const r = await d.berth(['network', 'rm', 'bridge']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /bridge is the default network and cannot be removed/);
  });
});

describe('NetworkService on the host', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-net-it-'));
  const runRoot = join(dir, 'run');
  const netName = `it-${tag}`;
  const subnet = freeSubnet();
  const ids: string[] = [];
  const procs: ChildProcess[] = [];
  let store: Store;
  let svc: NetworkService;
  let bridge = '';

  const service = (host?: NetworkHost) =>
    new NetworkService(store, new EventBus(store), silentLogger, {
      runRoot,
      bridgeName: `brd-${tag}`,
      bridgeSubnet: freeSubnet(),
      ...(host ? { host } : {}),
    });
  const container = () => {
    const id = newId();
    ids.push(id);
    return id;
  };

  before(async () => {
    store = new Store(join(dir, 'berth.db'));
    svc = service();
    await svc.init();
    bridge = (await svc.create({ name: netName, subnet })).bridge;
  });

  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    // Whatever a failed test left: a fresh service undoes every attachment it has a trace
    // of; then anything named after these containers, and the bridges.
    const fresh = service();
    await fresh.sweep(() => false).catch(() => undefined);
    for (const id of ids) await runCommand('ip', ['netns', 'delete', netnsNameOf(id)]);
    for (const b of [bridge, `brd-${tag}`]) {
      await removePublishedPortsRule(b).catch(() => undefined);
      await runCommand('ip', ['link', 'delete', b]);
    }
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Nothing of the attachment is left on the host.
  async function assertGone(id: string, ip: string, veth: string | undefined): Promise<void> {
    assert.ok(!existsSync(`/run/netns/${netnsNameOf(id)}`), 'netns gone');
    if (veth) assert.ok(!existsSync(`/sys/class/net/${veth}`), `host veth ${veth} gone`);
    const rules = await iptablesSave();
    assert.ok(!rules.includes(id), 'no iptables rule names the container');
    assert.ok(!rules.includes(`${ip}/32`), `no iptables rule names ${ip}`);
    const leases = join(runRoot, 'cni', 'ipam', netName);
    if (existsSync(leases)) assert.ok(!readdirSync(leases).includes(ip), `no lease on ${ip}`);
    assert.ok(!existsSync(join(runRoot, 'cni', 'results', `${id}-eth0.json`)), 'no CNI cache');
    assert.equal(store.networks.attachment(id), undefined, 'no record');
  }

  const hostVeth = async (id: string) =>
    JSON.parse(readFileSync(join(runRoot, 'cni', 'results', `${id}-eth0.json`), 'utf8')) as {
      result: { interfaces: { name: string; sandbox?: string }[] };
    };

  it('attaches: the address in the netns, lo up, the gateway answers, 127.0.0.1 is published', async () => {
    const id = container();
    const port = await freePort();
    const a = await svc.attach(id, netName, {
      portMappings: [{ hostPort: port, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    });
    const ns = netnsNameOf(id);
    assert.equal(a.netnsPath, `/run/netns/${ns}`);
    assert.equal(a.network, netName);
    assert.equal(a.prefixLen, 24);
    assert.equal(a.gateway, subnet.replace(/0\/24$/, '1'));
    assert.match(a.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.deepEqual(svc.attachment(id), a);
    assert.match(
      await sh(['ip', 'netns', 'exec', ns, 'ip', '-4', 'addr']),
      new RegExp(`inet ${a.ip.replace(/\./g, '\\.')}/24 .* eth0`),
    );
    assert.match(
      await sh(['ip', 'netns', 'exec', ns, 'ip', '-o', 'link', 'show', 'lo']),
      /[<,]UP[,>]/,
    );
    const ping = await runCommand('ip', [
      'netns',
      'exec',
      ns,
      'busybox',
      'ping',
      '-c',
      '1',
      '-W',
      '2',
      a.gateway,
    ]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    // portmap's snat sets it on the bridge: without it the kernel drops 127.0.0.1 once it
    // is DNATed to the bridge's subnet.
    assert.equal(
      readFileSync(`/proc/sys/net/ipv4/conf/${bridge}/route_localnet`, 'utf8').trim(),
      '1',
    );
    assert.match(
      await iptablesSave(),
      new RegExp(`-A CNI-ADMIN -o ${bridge} -m conntrack --ctstate DNAT`),
    );

    const www = join(dir, 'www');
    rmSync(www, { recursive: true, force: true });
    await runCommand('mkdir', ['-p', www]);
    writeFileSync(join(www, 'index.html'), `hello from ${ns}\n`);
    const httpd = spawn(
      'ip',
      ['netns', 'exec', ns, 'busybox', 'httpd', '-f', '-p', '80', '-h', www],
      {
        stdio: 'ignore',
      },
    );
    procs.push(httpd);
    let body = '';
    await waitFor(
      async () => {
        body = await fetch(`http://127.0.0.1:${port}/`)
          .then((r) => r.text())
          .catch(() => '');
        return body !== '';
      },
      10_000,
      'the published port to answer',
    );
    assert.equal(body, `hello from ${ns}\n`);
    httpd.kill('SIGKILL');
    await new Promise((r) => httpd.once('exit', r));

    const veth = (await hostVeth(id)).result.interfaces.find(
      (i) => !i.sandbox && i.name !== bridge,
    )?.name;
    assert.ok(veth && existsSync(`/sys/class/net/${veth}`));
    await svc.detach(id);
    await assertGone(id, a.ip, veth);
    assert.equal(
      await fetch(`http://127.0.0.1:${port}/`).then(
        () => 'answered',
        () => 'refused',
      ),
      'refused',
    );
    await svc.detach(id);
  });

  it('attaches and detaches many at once: no address twice, nothing left', async () => {
    const batch = Array.from({ length: 8 }, container);
    const as = await Promise.all(batch.map((id) => svc.attach(id, netName, { portMappings: [] })));
    assert.equal(new Set(as.map((a) => a.ip)).size, batch.length);
    assert.equal(store.networks.attachments().length, batch.length);
    await Promise.all(batch.map((id) => svc.detach(id)));
    for (const [i, id] of batch.entries()) await assertGone(id, as[i]?.ip ?? '', undefined);
  });

  it('a berthd that dies after an attach: the sweep leaves nothing', async () => {
    const id = container();
    const port = await freePort();
    const a = await svc.attach(id, netName, {
      portMappings: [{ hostPort: port, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    });
    const veth = (await hostVeth(id)).result.interfaces.find(
      (i) => !i.sandbox && i.name !== bridge,
    )?.name;
    assert.ok((await iptablesSave()).includes(id));
    // The service is dropped as it is; a new one on the same store and run root starts.
    const next = service();
    await next.init();
    assert.equal(await next.sweep((x) => x !== id), 1);
    await assertGone(id, a.ip, veth);
  });

  it('a berthd that dies in the middle of the CNI chain: the sweep leaves nothing', async () => {
    const id = container();
    const port = await freePort();
    // The firewall plugin does its work, and berthd dies before it hears the answer.
    let reached: () => void = () => undefined;
    const died = new Promise<void>((r) => (reached = r));
    const exec = async (argv: readonly string[], opts: ExecOptions) => {
      const r = await execFile(argv, opts);
      if (argv[0]?.endsWith('/firewall') && opts.env?.['CNI_COMMAND'] === 'ADD') {
        reached();
        return new Promise<never>(() => undefined);
      }
      return r;
    };
    const cacheDir = join(runRoot, 'cni', 'results');
    const dying = service({ ...hostNetworkHost({ cacheDir }), cni: new Cni({ cacheDir, exec }) });
    void dying.attach(id, netName, {
      portMappings: [{ hostPort: port, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    });
    await died;
    const rec = store.networks.attachment(id);
    assert.ok(rec && rec.ip === '', 'recorded, never completed');
    const cache = JSON.parse(readFileSync(join(cacheDir, `${id}-eth0.json`), 'utf8')) as {
      result: { ips: { address: string }[] };
    };
    const ip = cache.result.ips[0]?.address.split('/')[0] ?? '';
    const rules = await iptablesSave();
    assert.ok(rules.includes(`-s ${ip}/32 -j ACCEPT`), 'the firewall plugin made its rules');
    assert.ok(rules.includes(id), 'portmap and masquerade rules name the container');

    const next = service();
    await next.init();
    assert.equal(await next.sweep(() => false), 1);
    await assertGone(id, ip, undefined);
  });

  it('a berthd that dies after the record, before anything was made: the sweep clears the record', async () => {
    const id = container();
    store.networks.insertAttachment({
      containerId: id,
      networkId: svc.get(netName).id,
      netns: netnsNameOf(id),
      ifname: 'eth0',
      portMappings: [],
      createdAt: new Date().toISOString(),
      ip: '',
      prefixLen: 0,
      gateway: '',
      mac: '',
    });
    const next = service();
    await next.init();
    assert.equal(await next.sweep(() => false), 1);
    assert.equal(store.networks.attachment(id), undefined);
  });

  it('removing the network deletes its bridge, rule and leases', async () => {
    const id = container();
    await svc.attach(id, netName, { portMappings: [] });
    assert.ok(existsSync(`/sys/class/net/${bridge}`));
    await assert.rejects(svc.remove(netName), /is in use by container/);
    await svc.detach(id);
    await svc.remove(netName);
    assert.ok(!existsSync(`/sys/class/net/${bridge}`), 'bridge gone');
    assert.ok(!(await iptablesSave()).includes(`-o ${bridge} `), 'rule gone');
    assert.ok(!existsSync(join(runRoot, 'cni', 'ipam', netName)), 'leases gone');
    assert.ok(!existsSync(join(runRoot, 'cni', 'bridges', bridge)), 'marker gone');
    await sleep(0);
  });
});
