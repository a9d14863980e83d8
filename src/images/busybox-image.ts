// The built-in busybox image, made from the host's static busybox: no network needed, and
// the same busybox gives the same layer, config and image id on every host.
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import * as tar from 'tar';
import { execFile } from '../util/exec.ts';
import type { BlobInfo, ContentStore } from './content-store.ts';
import { hostPlatform } from './platform.ts';

export const BUSYBOX_CREATED = '2024-01-01T00:00:00Z';
const MTIME = new Date(BUSYBOX_CREATED);

const PASSWD =
  'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n';
const GROUP = 'root:x:0:\ndaemon:x:1:\ntty:x:5:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n';

async function buildRoot(root: string, busybox: string): Promise<void> {
  for (const d of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'root',
    'home',
    'var/spool/mail',
    'var/www',
    'etc',
    'tmp',
  ]) {
    await mkdir(join(root, d), { recursive: true, mode: 0o755 });
  }
  await chmod(join(root, 'tmp'), 0o1777);
  await chmod(join(root, 'root'), 0o700);
  await copyFile(busybox, join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  const { stdout } = await execFile([busybox, '--list-full']);
  for (const path of stdout.split('\n').filter(Boolean)) {
    if (path === 'bin/busybox') continue;
    const depth = path.split('/').length - 1;
    await symlink(`${'../'.repeat(depth)}bin/busybox`, join(root, path)).catch(() => undefined);
  }
  await writeFile(join(root, 'etc/passwd'), PASSWD, { mode: 0o644 });
  await writeFile(join(root, 'etc/group'), GROUP, { mode: 0o644 });
}

export interface BusyboxImage {
  readonly layer: BlobInfo;
  readonly config: Buffer;
}

// Writes the layer (a plain tar, entries sorted, fixed times and owners) into the store and
// returns it with the config, whose digest is the image id.
export async function makeBusyboxImage(
  store: ContentStore,
  busybox: string,
  tmpDir: string,
): Promise<BusyboxImage> {
  const work = await mkdtemp(join(tmpDir, '.tmp-busybox-'));
  try {
    const root = join(work, 'rootfs');
    await buildRoot(root, busybox);
    const entries = (await readdir(root, { recursive: true }))
      .map((p) => relative(root, join(root, p)))
      .sort();
    const stream = tar.c(
      { cwd: root, portable: true, noDirRecurse: true, mtime: MTIME, prefix: '' },
      entries,
    ) as unknown as NodeJS.ReadableStream;
    const layer = await store.putStream(stream as AsyncIterable<Buffer>);
    const p = hostPlatform();
    const config = Buffer.from(
      JSON.stringify({
        created: BUSYBOX_CREATED,
        architecture: p.architecture,
        os: 'linux',
        ...(p.variant ? { variant: p.variant } : {}),
        config: {
          Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
          Cmd: ['sh'],
          Labels: { 'org.berth.builtin': 'busybox' },
        },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
        history: [{ created: BUSYBOX_CREATED, created_by: "berth: the host's static busybox" }],
      }),
    );
    return { layer, config };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
