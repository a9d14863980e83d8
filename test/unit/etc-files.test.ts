import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FALLBACK_NAMESERVERS,
  containerHosts,
  containerResolvConf,
  isLoopbackIP,
  parseExtraHost,
  resolveExtraHosts,
  rewriteHosts,
  writeEtcFiles,
} from '../../src/network/etc-files.ts';
import { isBerthError } from '../../src/util/errors.ts';

const HOST_RESOLV = `# managed by resolvconf
nameserver 127.0.0.53
nameserver 10.0.0.2
  nameserver 127.0.1.1
nameserver ::1
nameserver 2001:4860:4860::8888
search corp.example
options edns0 trust-ad
`;

const HOST_HOSTS = '127.0.0.1\tlocalhost\n10.1.2.3\tbuildhost\n';

describe('containerResolvConf', () => {
  it('drops loopback nameservers in the container’s own network namespace', () => {
    assert.equal(
      containerResolvConf(HOST_RESOLV, true),
      [
        '# managed by resolvconf',
        'nameserver 10.0.0.2',
        'nameserver 2001:4860:4860::8888',
        'search corp.example',
        'options edns0 trust-ad',
        '',
      ].join('\n'),
    );
  });

  it('keeps every line when sharing the host network namespace', () => {
    const out = containerResolvConf(HOST_RESOLV, false);
    assert.equal(out, HOST_RESOLV);
    assert.match(out, /^nameserver 127\.0\.0\.53$/m);
    assert.match(out, /^nameserver ::1$/m);
  });

  it('ends with exactly one newline', () => {
    assert.equal(containerResolvConf('nameserver 1.1.1.1\n\n\n', true), 'nameserver 1.1.1.1\n');
    assert.equal(containerResolvConf('nameserver 1.1.1.1', false), 'nameserver 1.1.1.1\n');
  });
});

describe('containerHosts', () => {
  it('puts the hostname on the 127.0.0.1 line in none mode', () => {
    const out = containerHosts('box', 'none', HOST_HOSTS);
    const lines = out.split('\n');
    assert.equal(lines[0], '127.0.0.1\tlocalhost box');
    assert.ok(lines.some((l) => l.startsWith('::1\t') && l.includes('localhost')));
    assert.ok(!out.includes('buildhost'), 'host entries do not leak in');
    assert.ok(out.endsWith('\n'));
  });

  it('passes the host file through unchanged in host mode', () => {
    assert.equal(containerHosts('box', 'host', HOST_HOSTS), HOST_HOSTS);
  });
});

describe('writeEtcFiles', () => {
  let tmp: string;
  let hostEtc: string;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'berth-etc-'));
    hostEtc = join(tmp, 'host-etc');
    await mkdir(hostEtc);
    await writeFile(join(hostEtc, 'hosts'), HOST_HOSTS);
    await writeFile(join(hostEtc, 'resolv.conf'), HOST_RESOLV);
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes the three files for none mode from the given host etc', async () => {
    const dir = join(tmp, 'none');
    await mkdir(dir);
    const files = await writeEtcFiles(dir, 'box', 'none', hostEtc);
    assert.deepEqual(files, {
      hosts: join(dir, 'hosts'),
      hostname: join(dir, 'hostname'),
      resolvConf: join(dir, 'resolv.conf'),
    });
    assert.equal(await readFile(files.hostname, 'utf8'), 'box\n');
    assert.equal(await readFile(files.hosts, 'utf8'), containerHosts('box', 'none', ''));
    assert.doesNotMatch(await readFile(files.resolvConf, 'utf8'), /127\.0\.0\.53/);
  });

  it('copies host files for host mode', async () => {
    const dir = join(tmp, 'host');
    await mkdir(dir);
    const files = await writeEtcFiles(dir, 'box', 'host', hostEtc);
    assert.equal(await readFile(files.hosts, 'utf8'), HOST_HOSTS);
    assert.match(await readFile(files.resolvConf, 'utf8'), /^nameserver 127\.0\.0\.53$/m);
  });

  it('tolerates a host without resolv.conf or hosts', async () => {
    const dir = join(tmp, 'empty');
    await mkdir(dir);
    const files = await writeEtcFiles(dir, 'box', 'host', join(tmp, 'missing'));
    assert.equal(await readFile(files.hosts, 'utf8'), '');
    assert.equal(await readFile(files.resolvConf, 'utf8'), '\n');
  });
});

const STUB_ONLY = `# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
nameserver 127.0.0.53
options edns0 trust-ad
search lan
`;
const UPSTREAM = `# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).
nameserver 192.168.1.1
nameserver 127.0.0.1
nameserver fe80::1%eth0
search lan
`;

describe('containerResolvConf, resolvers a container can reach', () => {
  it('knows loopback addresses', () => {
    for (const ip of ['127.0.0.53', '127.0.1.1', '::1', '::ffff:127.0.0.1'])
      assert.ok(isLoopbackIP(ip), ip);
    for (const ip of ['10.0.0.2', '8.8.8.8', '2001:4860:4860::8888', '::'])
      assert.ok(!isLoopbackIP(ip), ip);
  });

  it('takes systemd-resolved’s upstream servers when the host names only its stub', () => {
    const out = containerResolvConf(STUB_ONLY, true, { upstreamResolv: UPSTREAM });
    assert.equal(
      out,
      [
        'nameserver 192.168.1.1',
        'nameserver fe80::1%eth0',
        '# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).',
        'options edns0 trust-ad',
        'search lan',
        '',
      ].join('\n'),
    );
    assert.doesNotMatch(out, /nameserver 127\./);
  });

  it('falls back to docker’s public servers when nothing reachable is left', () => {
    const out = containerResolvConf(STUB_ONLY, true, { upstreamResolv: 'nameserver 127.0.0.1\n' });
    const servers = out.match(/^nameserver .*/gm);
    assert.deepEqual(
      servers,
      FALLBACK_NAMESERVERS.map((s) => `nameserver ${s}`),
    );
    assert.deepEqual(FALLBACK_NAMESERVERS, ['8.8.8.8', '8.8.4.4']);
    assert.match(containerResolvConf('', true), /^nameserver 8\.8\.8\.8$/m);
  });

  it('keeps the stub in host mode, where the host’s loopback is the container’s', () => {
    assert.equal(containerResolvConf(STUB_ONLY, false, { upstreamResolv: UPSTREAM }), STUB_ONLY);
  });

  it('replaces nameservers with --dns and search domains with --dns-search', () => {
    const out = containerResolvConf(HOST_RESOLV, true, {
      dns: ['1.1.1.1', '9.9.9.9'],
      dnsSearch: ['a.example', 'b.example'],
    });
    assert.equal(
      out,
      [
        'nameserver 1.1.1.1',
        'nameserver 9.9.9.9',
        'search a.example b.example',
        '# managed by resolvconf',
        'options edns0 trust-ad',
        '',
      ].join('\n'),
    );
  });

  it('drops the search domains for --dns-search .', () => {
    const out = containerResolvConf(HOST_RESOLV, true, { dnsSearch: ['.'] });
    assert.doesNotMatch(out, /^search/m);
    assert.match(out, /^nameserver 10\.0\.0\.2$/m);
  });

  it('treats an empty --dns as none given', () => {
    assert.equal(
      containerResolvConf(HOST_RESOLV, true, { dns: [], dnsSearch: [] }),
      containerResolvConf(HOST_RESOLV, true),
    );
  });
});

describe('containerHosts, bridge and user networks', () => {
  const peers = [
    { ip: '10.88.0.7', names: ['web', 'web.local'] },
    { ip: '10.88.0.5', names: ['db'] },
    { ip: '10.88.0.2', names: ['self-duplicate'] },
  ];

  it('maps the own address to the hostname and name, then extra hosts and peers', () => {
    const out = containerHosts('box', 'bridge', HOST_HOSTS, {
      ip: '10.88.0.2',
      aliases: ['mybox'],
      extraHosts: [{ ip: '192.0.2.9', names: ['api'] }],
      peers,
    });
    assert.equal(
      out,
      [
        '127.0.0.1\tlocalhost',
        '::1\tlocalhost ip6-localhost ip6-loopback',
        'fe00::0\tip6-localnet',
        'ff00::0\tip6-mcastprefix',
        'ff02::1\tip6-allnodes',
        'ff02::2\tip6-allrouters',
        '192.0.2.9\tapi',
        '10.88.0.2\tbox mybox',
        '10.88.0.5\tdb',
        '10.88.0.7\tweb web.local',
        '',
      ].join('\n'),
    );
  });

  it('gives a dotted hostname its short name too', () => {
    const out = containerHosts('box.corp.example', 'container', '', { ip: '10.88.0.3' });
    assert.match(out, /^10\.88\.0\.3\tbox\.corp\.example box$/m);
  });

  it('resolves the hostname on loopback while the address is not known', () => {
    assert.match(containerHosts('box', 'bridge', ''), /^127\.0\.0\.1\tlocalhost box$/m);
  });

  it('resolves the hostname to 127.0.0.1 with no network, with extra hosts', () => {
    const out = containerHosts('box', 'none', '', {
      aliases: ['named'],
      extraHosts: [{ ip: '192.0.2.9', names: ['api'] }],
      peers,
    });
    assert.match(out, /^127\.0\.0\.1\tlocalhost box named$/m);
    assert.match(out, /^192\.0\.2\.9\tapi$/m);
    assert.doesNotMatch(out, /10\.88/);
  });

  it('adds the hostname on the host’s address in host mode when the host lacks it', () => {
    const out = containerHosts('box', 'host', HOST_HOSTS, {
      ip: '192.0.2.2',
      extraHosts: [{ ip: '192.0.2.9', names: ['api'] }],
    });
    assert.equal(out, `${HOST_HOSTS}192.0.2.9\tapi\n192.0.2.2\tbox\n`);
    assert.equal(
      containerHosts('buildhost', 'host', HOST_HOSTS, { ip: '192.0.2.2' }),
      HOST_HOSTS,
      'the host’s own entry stands',
    );
    assert.equal(
      containerHosts('box', 'host', 'x 1', { ip: '192.0.2.2' }),
      'x 1\n192.0.2.2\tbox\n',
    );
  });
});

describe('--add-host', () => {
  it('parses NAME:IP, NAME=IP, bracketed IPv6 and host-gateway', () => {
    assert.deepEqual(parseExtraHost('db:10.0.0.5'), { name: 'db', ip: '10.0.0.5' });
    assert.deepEqual(parseExtraHost('db=10.0.0.5'), { name: 'db', ip: '10.0.0.5' });
    assert.deepEqual(parseExtraHost('v6:::1'), { name: 'v6', ip: '::1' });
    assert.deepEqual(parseExtraHost('v6=[2001:db8::1]'), { name: 'v6', ip: '2001:db8::1' });
    assert.deepEqual(parseExtraHost('gw:host-gateway'), { name: 'gw', ip: 'host-gateway' });
  });

  it('rejects what is not NAME:IP, naming the field', () => {
    for (const bad of ['db', 'db:', ':10.0.0.1', 'db:nope', 'bad name:10.0.0.1']) {
      assert.throws(
        () => parseExtraHost(bad, 'extraHosts[3]'),
        (e: unknown) => isBerthError(e, 'INVALID_ARGUMENT') && /extraHosts\[3\]/.test(e.message),
        bad,
      );
    }
  });

  it('resolves host-gateway to the host’s advertised address', () => {
    assert.deepEqual(resolveExtraHosts(['gw:host-gateway', 'db:10.0.0.5'], '192.0.2.2'), [
      { ip: '192.0.2.2', names: ['gw'] },
      { ip: '10.0.0.5', names: ['db'] },
    ]);
  });
});

describe('writeEtcFiles for a bridge, and rewriteHosts', () => {
  let tmp: string;
  let hostEtc: string;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'berth-etc-bridge-'));
    hostEtc = join(tmp, 'host-etc');
    await mkdir(hostEtc);
    await writeFile(join(hostEtc, 'hosts'), HOST_HOSTS);
    await writeFile(join(hostEtc, 'resolv.conf'), STUB_ONLY);
    await writeFile(join(tmp, 'upstream.conf'), UPSTREAM);
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('writes hosts with the own address and resolv.conf without the stub', async () => {
    const dir = join(tmp, 'bridge');
    await mkdir(dir);
    const files = await writeEtcFiles(dir, 'box', 'bridge', hostEtc, {
      ip: '10.88.0.2',
      aliases: ['named'],
      extraHosts: [{ ip: '192.0.2.2', names: ['gw'] }],
      upstreamResolvPath: join(tmp, 'upstream.conf'),
    });
    assert.match(await readFile(files.hosts, 'utf8'), /^10\.88\.0\.2\tbox named$/m);
    assert.match(await readFile(files.hosts, 'utf8'), /^192\.0\.2\.2\tgw$/m);
    const resolv = await readFile(files.resolvConf, 'utf8');
    assert.match(resolv, /^nameserver 192\.168\.1\.1$/m);
    assert.doesNotMatch(resolv, /nameserver 127\./);
    assert.equal(await readFile(files.hostname, 'utf8'), 'box\n');
  });

  it('takes --dns and --dns-search', async () => {
    const dir = join(tmp, 'dns');
    await mkdir(dir);
    const files = await writeEtcFiles(dir, 'box', 'bridge', hostEtc, {
      ip: '10.88.0.2',
      dns: ['1.1.1.1'],
      dnsSearch: ['corp.example'],
      upstreamResolvPath: join(tmp, 'missing'),
    });
    const resolv = await readFile(files.resolvConf, 'utf8');
    assert.match(resolv, /^nameserver 1\.1\.1\.1\nsearch corp\.example\n/);
    assert.doesNotMatch(resolv, /search lan/);
  });

  it('rewrites hosts on the same inode, shorter and longer', async () => {
    const path = join(tmp, 'hosts-live');
    const first = containerHosts('box', 'bridge', '', {
      ip: '10.88.0.2',
      peers: [
        { ip: '10.88.0.5', names: ['db'] },
        { ip: '10.88.0.7', names: ['web'] },
      ],
    });
    await writeFile(path, first);
    const { ino } = await stat(path);

    const shorter = containerHosts('box', 'bridge', '', { ip: '10.88.0.2' });
    await rewriteHosts(path, shorter);
    assert.equal(await readFile(path, 'utf8'), shorter);
    assert.equal((await stat(path)).ino, ino);

    const longer = containerHosts('box', 'bridge', '', {
      ip: '10.88.0.2',
      peers: [
        { ip: '10.88.0.5', names: ['db'] },
        { ip: '10.88.0.7', names: ['web'] },
        { ip: '10.88.0.9', names: ['cache', 'cache.local'] },
      ],
    });
    await rewriteHosts(path, longer);
    assert.equal(await readFile(path, 'utf8'), longer);
    assert.equal((await stat(path)).ino, ino);
    await assert.rejects(rewriteHosts(join(tmp, 'absent'), 'x'), /ENOENT/);
  });
});
