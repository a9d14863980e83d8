import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerHosts, containerResolvConf, writeEtcFiles } from '../../src/network/etc-files.ts';

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
