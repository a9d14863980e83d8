// For the tests that drive berthd's Docker API with Docker's own clients: where a test
// daemon's Docker socket is, raw requests to it (to see statuses and error bodies), the
// real docker CLI run against it, and small busybox images pushed to a test registry.
import { request } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { runCommand, type RunResult, type TestDaemon } from './daemon.ts';
import { OciLayoutBuilder, type BuiltImage, type TestRegistry } from './registry.ts';
import { tarball, type Entry } from '../fixtures/layers/tar-writer.ts';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';

// Debian's docker CLI (docker.io) when it is installed, else the one on the PATH;
// BERTH_TEST_DOCKER picks another.
export const DOCKER =
  process.env['BERTH_TEST_DOCKER'] ??
  (existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');

// berthd's Docker socket (TestDaemon's).
export function dockerSocketOf(d: TestDaemon): string {
  return d.dockerSocket;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  // The body as JSON, when it is.
  readonly json: unknown;
}

export function dockerRequest(
  socket: string,
  method: string,
  path: string,
  o: { body?: unknown; raw?: Buffer; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const payload =
      o.raw ?? (o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body)));
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: {
          ...(payload && !o.raw ? { 'content-type': 'application/json' } : {}),
          ...(payload ? { 'content-length': String(payload.length) } : {}),
          ...o.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(body);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

// The docker CLI against berthd, with a docker config of the test's own (never root's).
export function dockerCli(
  d: TestDaemon,
  configDir: string,
  args: readonly string[],
  o: { input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runCommand(DOCKER, args, {
    ...o,
    env: {
      PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: configDir,
      DOCKER_HOST: `unix://${dockerSocketOf(d)}`,
      DOCKER_CONFIG: configDir,
    },
  });
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const dir = (name: string): Entry => ({ name, type: 'dir', mode: 0o755 });

// A busybox image of two layers (busybox and its links; a file of the test's), with a label
// and an exposed port, named `tag` in the layout.
export async function busyboxImage(
  layout: OciLayoutBuilder,
  tag: string,
  o: { marker?: string; labels?: Record<string, string> } = {},
): Promise<BuiltImage> {
  const gz = async (entries: readonly Entry[]) => {
    const tar = tarball(entries);
    const b = await layout.blob(gzipSync(tar));
    return {
      ...b,
      diffId: sha256(tar),
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      tar,
    };
  };
  const base = await gz([
    dir('bin/'),
    { name: 'bin/busybox', body: readFileSync('/bin/busybox'), mode: 0o755 },
    ...['sh', 'cat', 'echo', 'ls', 'sleep', 'httpd', 'id'].map((n): Entry => ({
      name: `bin/${n}`,
      type: 'symlink',
      linkname: 'busybox',
    })),
    dir('etc/'),
    dir('tmp/'),
  ]);
  const top = await gz([dir('etc/'), { name: 'etc/marker', body: `${o.marker ?? tag}\n` }]);
  const img = await layout.image(
    [base, top],
    { os: 'linux', architecture: 'amd64' },
    {
      Env: ['PATH=/bin'],
      Cmd: ['cat', '/etc/marker'],
      ExposedPorts: { '8080/tcp': {} },
      Labels: { 'org.example.suite': 'docker', ...o.labels },
    },
  );
  layout.tag(tag, {
    digest: img.manifestDigest,
    size: img.manifestSize,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
  });
  return img;
}

// Builds the images into a fresh layout and pushes each to the registry as repo:tag.
export async function seedRegistry(
  reg: TestRegistry,
  images: readonly { repo: string; tag: string; marker?: string }[],
): Promise<{ layout: OciLayoutBuilder; built: Map<string, BuiltImage> }> {
  const layout = await OciLayoutBuilder.create();
  const built = new Map<string, BuiltImage>();
  for (const i of images) {
    const key = `${i.repo}:${i.tag}`;
    built.set(
      key,
      await busyboxImage(layout, key.replace(/[/:]/g, '_'), { marker: i.marker ?? key }),
    );
  }
  await layout.writeIndex();
  for (const i of images)
    await reg.push(layout.dir, `${i.repo}:${i.tag}`.replace(/[/:]/g, '_'), `${i.repo}:${i.tag}`);
  return { layout, built };
}

// Before TestDaemon.destroy: what Docker clients made that destroy does not remove itself.
// Containers go first (through the native API), then user networks (their bridges are the
// host's), then volumes.
export async function removeDockerLeftovers(d: TestDaemon): Promise<void> {
  const sock = dockerSocketOf(d);
  const all = await d.client.listContainers(true).catch(() => []);
  for (const c of all) await d.client.removeContainer(c.Id, true).catch(() => undefined);
  const nets = await dockerRequest(sock, 'GET', '/networks').catch(() => undefined);
  for (const n of (nets?.json as { Id: string; Name: string }[] | undefined) ?? []) {
    if (n.Name !== 'bridge')
      await dockerRequest(sock, 'DELETE', `/networks/${n.Id}`).catch(() => undefined);
  }
  await dockerRequest(sock, 'POST', '/volumes/prune').catch(() => undefined);
}
