// Containers on networks: published and named ports, what a container knows of how it is
// reached, names that resolve in every mode, and nothing left after a crash. Traffic goes
// only to loopback and to the containers this test made.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { get } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, TestDaemon, waitForValue } from '../helpers/daemon.ts';

interface Inspect {
  Id: string;
  State: { Status: string };
  NetworkSettings: {
    IPAddress: string;
    Ports: Record<string, { HostIp: string; HostPort: string }[]>;
  };
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

// veths: the ports of this daemon's own bridge (other tests run side by side).
async function hostState(
  bridge = '',
): Promise<{ netns: string[]; veths: string[]; rules: string }> {
  const links = await runCommand('/usr/sbin/ip', ['-o', 'link', 'show', 'master', bridge]);
  const rules = await runCommand('/usr/sbin/iptables-save', []);
  const nat = await runCommand('/usr/sbin/iptables-save', ['-t', 'nat']);
  return {
    netns: existsSync('/run/netns')
      ? readdirSync('/run/netns').filter((n) => n.startsWith('berth-'))
      : [],
    veths: links.stdout.split('\n').filter(Boolean),
    rules: rules.stdout + nat.stdout,
  };
}

describe('networking', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  const inspect = (id: string) => d.inspect<Inspect>(id);

  it('publishes 127.0.0.1::80, and the container knows that port and address', async () => {
    const id = await d.runDetached([
      '-p',
      '127.0.0.1::80',
      '--port',
      'admin',
      'busybox',
      'sh',
      '-c',
      'mkdir -p /tmp/www && echo hello-from-berth > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www',
    ]);
    const c = await inspect(id);
    const hostPort = Number(c.NetworkSettings.Ports['80/tcp']?.[0]?.HostPort);
    assert.ok(hostPort >= 20000 && hostPort <= 32000);
    const body = await waitForValue('httpd', async () =>
      httpGet(`http://127.0.0.1:${hostPort}/`).catch(() => undefined),
    );
    assert.equal(body, 'hello-from-berth\n');
    const env = await d.berthOk(['exec', id, 'env']);
    assert.match(env, new RegExp(`^BERTH_HOST_PORT_80_TCP=${hostPort}$`, 'm'));
    assert.match(env, new RegExp(`^BERTH_ADDR_80_TCP=127.0.0.1:${hostPort}$`, 'm'));
    assert.match(
      env,
      new RegExp(`^BERTH_IP=${c.NetworkSettings.IPAddress.replace(/\./g, '\\.')}$`, 'm'),
    );
    const admin = Number(/^BERTH_HOST_PORT_ADMIN=(\d+)$/m.exec(env)?.[1]);
    assert.match(env, new RegExp(`^PORT=${admin}$`, 'm'), 'PORT is the first named port');
    const doc = JSON.parse(await d.berthOk(['exec', id, 'cat', '/run/berth/network.json'])) as {
      ip: string;
      ports: { key: string; hostPort: number; address: string }[];
    };
    assert.equal(doc.ip, c.NetworkSettings.IPAddress);
    assert.equal(doc.ports.find((p) => p.key === '80_TCP')?.address, `127.0.0.1:${hostPort}`);
    // Read-only: the container cannot change what it is told.
    const w = await d.berth(['exec', id, 'sh', '-c', 'echo x > /run/berth/network.json']);
    assert.notEqual(w.code, 0);
    // One masquerade rule for the network, none per container.
    const nat = (await runCommand('/usr/sbin/iptables-save', ['-t', 'nat'])).stdout;
    assert.match(nat, new RegExp(`berth masquerade ${d.bridge}`));
    assert.ok(
      !nat.split('\n').some((l) => l.startsWith('-A POSTROUTING') && l.includes(id)),
      'no per-container masquerade chain',
    );
    const ps = await d.berthOk(['ps', '--filter', `id=${id}`, '--format', '{{.Ports}}']);
    assert.match(ps, new RegExp(`127.0.0.1:${hostPort}->80/tcp`));
    await d.berthOk(['rm', '-f', id]);
    assert.deepEqual(d.leaks([id]), []);
  });

  it('resolves the hostname in bridge, host and none modes', async () => {
    for (const mode of ['bridge', 'host', 'none']) {
      const r = await d.berth([
        'run',
        '--rm',
        '--network',
        mode,
        'busybox',
        'sh',
        '-c',
        'hostname -i && ping -c1 -W2 "$(hostname)" >/dev/null && echo resolved',
      ]);
      assert.equal(r.code, 0, `${mode}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /resolved/, mode);
    }
    const none = await d.berthOk([
      'run',
      '--rm',
      '--network',
      'none',
      'busybox',
      'ip',
      '-o',
      'link',
    ]);
    assert.deepEqual(
      none
        .trim()
        .split('\n')
        .map((l) => l.split(':')[1]?.trim()),
      ['lo'],
    );
    const hostLinks = (await runCommand('/usr/sbin/ip', ['-o', 'link'])).stdout
      .trim()
      .split('\n').length;
    const inHost = await d.berthOk([
      'run',
      '--rm',
      '--network',
      'host',
      'busybox',
      'ip',
      '-o',
      'link',
    ]);
    assert.ok(
      Math.abs(inHost.trim().split('\n').length - hostLinks) <= 2,
      'host mode sees the host',
    );
  });

  it('in host mode a named port is a free host port, and the process is told to bind it', async () => {
    const out = await d.berthOk([
      'run',
      '--rm',
      '--network',
      'host',
      '--port',
      'web',
      'busybox',
      'sh',
      '-c',
      'echo $PORT $BERTH_PORT_WEB $BERTH_HOST_PORT_WEB $BERTH_IP $BERTH_HOST_IP',
    ]);
    const [port, inner, outer, ip, hostIP] = out.trim().split(' ');
    assert.ok(Number(port) >= 20000 && Number(port) <= 32000);
    assert.equal(inner, port);
    assert.equal(outer, port);
    assert.equal(ip, hostIP);
  });

  it('containers on a user network reach each other by name', async () => {
    await d.berthOk(['network', 'create', 'appnet-t']);
    const a = await d.runDetached([
      '--name',
      'alpha',
      '--network',
      'appnet-t',
      'busybox',
      'sleep',
      '1000',
    ]);
    const b = await d.runDetached([
      '--name',
      'beta',
      '--network',
      'appnet-t',
      'busybox',
      'sleep',
      '1000',
    ]);
    // alpha was running before beta existed: its /etc/hosts was rewritten in place.
    const r = await d.berth(['exec', a, 'ping', '-c1', '-W2', 'beta']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const r2 = await d.berth(['exec', b, 'ping', '-c1', '-W2', 'alpha']);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    // Still true while berthd is down: enter alpha's namespaces directly.
    const pid = (JSON.parse(await d.berthOk(['inspect', a])) as { State: { Pid: number } }[])[0]
      ?.State.Pid;
    await d.kill9();
    const down = await runCommand('/usr/bin/nsenter', [
      '-t',
      String(pid),
      '-m',
      '-n',
      '-u',
      '-r',
      '-w',
      '/bin/ping',
      '-c1',
      '-W2',
      'beta',
    ]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    await d.startProcess();
    const r3 = await d.berth(['exec', a, 'ping', '-c1', '-W2', 'beta']);
    assert.equal(r3.code, 0);
    const busy = await d.berth(['network', 'rm', 'appnet-t']);
    assert.notEqual(busy.code, 0, 'a network in use is not removed');
    await d.berthOk(['rm', '-f', a, b]);
    await d.berthOk(['network', 'rm', 'appnet-t']);
  });

  it('fifty concurrent runs with named ports: no port or IP twice, all released after removal', async () => {
    const ids = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        d.runDetached([
          '--name',
          `np${i}`,
          '--port',
          'web',
          '--port',
          'metrics',
          'busybox',
          'sleep',
          '1000',
        ]),
      ),
    );
    const all = (JSON.parse(await d.berthOk(['inspect', ...ids])) as Inspect[]).map((c) => ({
      ip: c.NetworkSettings.IPAddress,
      ports: Object.values(c.NetworkSettings.Ports).flatMap((v) => v.map((p) => p.HostPort)),
    }));
    const ips = all.map((c) => c.ip);
    const ports = all.flatMap((c) => c.ports);
    assert.equal(new Set(ips).size, 50);
    assert.equal(ports.length, 100);
    assert.equal(new Set(ports).size, 100);
    await Promise.all(ids.map((id) => d.berthOk(['rm', '-f', id])));
    assert.deepEqual(d.leaks(ids), []);
    const after = await hostState();
    for (const id of ids) {
      assert.ok(!after.netns.includes(`berth-${id.slice(0, 12)}`));
      assert.ok(!after.rules.includes(id), `iptables rule of ${id}`);
    }
    // The same ports can be had again.
    const again = await d.runDetached(['--port', 'web', 'busybox', 'sleep', '1000']);
    await d.berthOk(['rm', '-f', again]);
  });

  it('a kill -9 of berthd in the middle of a networked start leaves nothing behind', async () => {
    const before = await hostState(d.bridge);
    const id = (
      await d.berthOk(['create', '-p', '127.0.0.1::80', 'busybox', 'sleep', '1000'])
    ).trim();
    const start = d.berth(['start', id]);
    // Somewhere between the attachment's record and the monitor: stop berthd there.
    await sleep(40);
    await d.kill9();
    await start;
    await d.startProcess();
    // Started or cleaned, never half-made: if it is not running, nothing of it is left.
    const c = await inspect(id);
    if (c.State.Status !== 'running') {
      const now = await hostState(d.bridge);
      assert.ok(!now.netns.includes(`berth-${id.slice(0, 12)}`));
      assert.ok(!now.rules.includes(id));
    }
    await d.berthOk(['rm', '-f', id]);
    const after = await hostState(d.bridge);
    assert.ok(!after.netns.includes(`berth-${id.slice(0, 12)}`), 'no netns left');
    assert.ok(!after.rules.includes(id), 'no iptables rule left');
    assert.equal(after.veths.length, before.veths.length, 'no veth left');
    const leases = await runCommand('/usr/bin/grep', ['-rl', id, `${d.runRoot}/cni`]);
    assert.equal(leases.stdout.trim(), '', 'no IPAM lease left');
  });

  it('refuses ports that clash or make no sense, naming the flag', async () => {
    const id = await d.runDetached(['-p', '127.0.0.1:31999:80', 'busybox', 'sleep', '1000']);
    const clash = await d.berth(['create', '-p', '127.0.0.1:31999:80', 'busybox', 'true']);
    assert.equal(clash.code, 125);
    assert.match(clash.stderr, /31999/);
    const none = await d.berth(['create', '--network', 'none', '-p', '80', 'busybox', 'true']);
    assert.equal(none.code, 125);
    const bad = await d.berth(['create', '-p', '99999', 'busybox', 'true']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /publish|port/i);
    await d.berthOk(['rm', '-f', id]);
  });
});
