// The npm dockerode client against berthd's Docker socket: version, pull with
// followProgress from a loopback registry, a container's create, start, wait and logs,
// listings, removal, volumes and networks; a bad request rejects with Docker's status and
// message and leaves nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Docker from 'dockerode';
import { TestDaemon } from '../helpers/daemon.ts';
import { dockerSocketOf, removeDockerLeftovers, seedRegistry } from '../helpers/docker-fixtures.ts';
import { TestRegistry, type BuiltImage, type OciLayoutBuilder } from '../helpers/registry.ts';

interface ProgressEvent {
  status?: string;
  id?: string;
  error?: string;
}

// Docker's 8-byte frames (stream, 0, 0, 0, big-endian length) of a log without a TTY.
function demux(b: Buffer): { stdout: string; stderr: string } {
  const out = { stdout: '', stderr: '' };
  let i = 0;
  while (i + 8 <= b.length) {
    const len = b.readUInt32BE(i + 4);
    const text = b.subarray(i + 8, i + 8 + len).toString();
    if (b[i] === 2) out.stderr += text;
    else out.stdout += text;
    i += 8 + len;
  }
  return out;
}

describe('dockerode', () => {
  let d: TestDaemon;
  let reg: TestRegistry;
  let layout: OciLayoutBuilder;
  let built: Map<string, BuiltImage>;
  let docker: Docker;
  let ref: string;

  before(async () => {
    reg = await TestRegistry.start();
    ({ layout, built } = await seedRegistry(reg, [{ repo: 'node/app', tag: 'v1' }]));
    ref = `${reg.host}/node/app:v1`;
    d = await TestDaemon.start();
    docker = new Docker({ socketPath: dockerSocketOf(d) });
  });
  after(async () => {
    await removeDockerLeftovers(d);
    await d.destroy();
    await reg.stop();
    await layout.remove();
  });

  it('version, versioned and not', async () => {
    const v = await docker.version();
    assert.equal(v.ApiVersion, '1.41');
    const pinned = new Docker({ socketPath: dockerSocketOf(d), version: 'v1.41' });
    assert.equal((await pinned.version()).ApiVersion, '1.41');
  });

  it('pulls with followProgress', async () => {
    const stream = await docker.pull(ref);
    const seen: ProgressEvent[] = [];
    const out = await new Promise<ProgressEvent[]>((resolve, reject) =>
      docker.modem.followProgress(
        stream,
        (err: Error | null, res: ProgressEvent[]) => (err ? reject(err) : resolve(res)),
        (e: ProgressEvent) => seen.push(e),
      ),
    );
    assert.ok(seen.length > 0, 'progress events arrive');
    assert.ok(out.some((e) => e.status === 'Pull complete'));
    assert.equal(out.at(-1)?.status, `Status: Downloaded newer image for ${ref}`);
    assert.ok(!out.some((e) => e.error), JSON.stringify(out));
    const images = await docker.listImages({ filters: { reference: [ref] } });
    assert.equal(images.length, 1);
    assert.equal(images[0]?.Id, built.get('node/app:v1')?.configDigest);
    assert.deepEqual(images[0]?.RepoTags, [ref]);
    const img = await docker.getImage(ref).inspect();
    assert.deepEqual(img.Config.Cmd, ['cat', '/etc/marker']);
  });

  it('a pull that fails at the registry ends its stream with the error', async () => {
    const stream = await docker.pull(`${reg.host}/node/missing:v1`);
    const out = await new Promise<ProgressEvent[]>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null, res: ProgressEvent[]) =>
        err ? reject(err) : resolve(res),
      ),
    );
    // Docker's way: the stream's last message carries the error.
    assert.match(out.at(-1)?.error ?? '', /node\/missing/);
  });

  it('createContainer, start, wait, logs, listContainers, remove', async () => {
    const c = await docker.createContainer({
      Image: ref,
      name: 'dockerode-one',
      Cmd: ['sh', '-c', 'echo to-out; echo to-err >&2; exit 3'],
      Labels: { suite: 'dockerode', 'com.example.exact': 'a=b c' },
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await c.start();
      const waited = (await c.wait()) as { StatusCode: number };
      assert.equal(waited.StatusCode, 3);
      const logs = (await c.logs({
        stdout: true,
        stderr: true,
        follow: false,
      })) as unknown as Buffer;
      assert.deepEqual(demux(Buffer.from(logs)), { stdout: 'to-out\n', stderr: 'to-err\n' });
      const listed = await docker.listContainers({
        all: true,
        filters: { label: ['suite=dockerode'] },
      });
      assert.equal(listed.length, 1);
      assert.equal(listed[0]?.Id, c.id);
      assert.deepEqual(listed[0]?.Names, ['/dockerode-one']);
      // The image's labels, then the container's own, as Docker merges them.
      assert.deepEqual(listed[0]?.Labels, {
        'org.example.suite': 'docker',
        suite: 'dockerode',
        'com.example.exact': 'a=b c',
      });
      // Once wait has answered, the container is not running: what a client that waits and
      // then removes relies on.
      assert.equal(listed[0]?.State, 'exited');
      await c.remove();
    } finally {
      await c.remove({ force: true }).catch(() => undefined);
    }
    await assert.rejects(c.inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    assert.deepEqual(
      await docker.listContainers({ all: true, filters: { label: ['suite=dockerode'] } }),
      [],
    );
  });

  it('createVolume and createNetwork, inspected and removed', async () => {
    const v = await docker.createVolume({ Name: 'dockerode-vol', Labels: { suite: 'dockerode' } });
    assert.equal(v.name, 'dockerode-vol');
    const vi = await docker.getVolume('dockerode-vol').inspect();
    assert.deepEqual(vi.Labels, { suite: 'dockerode' });
    const vols = await docker.listVolumes({ filters: { label: ['suite=dockerode'] } });
    assert.deepEqual(
      vols.Volumes.map((x) => x.Name),
      ['dockerode-vol'],
    );
    await docker.getVolume('dockerode-vol').remove();

    const n = await docker.createNetwork({ Name: 'dockerode-net', Labels: { suite: 'dockerode' } });
    const ni = (await n.inspect()) as {
      Name: string;
      Labels: Record<string, string>;
      Driver: string;
    };
    assert.equal(ni.Name, 'dockerode-net');
    assert.equal(ni.Driver, 'bridge');
    assert.deepEqual(ni.Labels, { suite: 'dockerode' });
    const nets = await docker.listNetworks({ filters: { label: ['suite=dockerode'] } });
    assert.deepEqual(
      nets.map((x) => x.Name),
      ['dockerode-net'],
    );
    await n.remove();
    assert.deepEqual(await docker.listNetworks({ filters: { label: ['suite=dockerode'] } }), []);
  });

  it('bad requests reject with Docker status and message, and make nothing', async () => {
    const rejectsWith = async (p: Promise<unknown>, status: number, msg: RegExp) =>
      assert.rejects(p, (e: { statusCode?: number; json?: { message?: string } }) => {
        assert.equal(e.statusCode, status);
        assert.match(e.json?.message ?? '', msg);
        return true;
      });
    await rejectsWith(docker.createVolume({ Name: 'nfs-vol', Driver: 'nfs' }), 501, /driver "nfs"/);
    await rejectsWith(
      docker.createNetwork({ Name: 'ov-net', Driver: 'overlay' }),
      501,
      /driver "overlay"/,
    );
    await rejectsWith(docker.getImage('nothere:v1').inspect(), 404, /No such image: nothere:v1/);
    await rejectsWith(docker.getImage('nothere:v1').remove(), 404, /No such image/);
    assert.deepEqual((await docker.listVolumes()).Volumes, []);
    assert.deepEqual(
      (await docker.listNetworks()).map((n) => n.Name),
      ['bridge'],
    );
  });

  it('removes the image', async () => {
    const removed = (await docker.getImage(ref).remove()) as Record<string, string>[];
    assert.ok(removed.some((r) => r['Untagged'] === ref));
    assert.ok(removed.some((r) => r['Deleted'] === built.get('node/app:v1')?.configDigest));
    assert.deepEqual(await docker.listImages({ filters: { reference: [ref] } }), []);
  });
});
