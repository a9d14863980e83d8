// A bare OCI bundle equivalent to what berthd writes for `berth run busybox true`: the same
// busybox root layout, and config.json from berth's own spec builder (src/runtime/spec.ts),
// so bare runc does the same mounts, namespaces, caps and cgroup work berth asks of it.
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeEtcFiles, type EtcFiles } from '../../src/network/etc-files.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { hardNofile } from '../../src/util/proc.ts';

export const BUSYBOX = '/bin/busybox';

// What berthd's built-in image holds (src/images/busybox-image.ts): /bin/busybox and
// one relative symlink per applet from `busybox --list-full`.
export async function makeBusyboxRootfs(root: string, busybox = BUSYBOX): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'root', 'home', 'var/spool/mail']) {
    await mkdir(join(root, d), { recursive: true });
  }
  await copyFile(busybox, join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  const list = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' });
  for (const path of list.split('\n').filter(Boolean)) {
    if (path === 'bin/busybox') continue;
    const depth = path.split('/').length - 1;
    await symlink(`${'../'.repeat(depth)}bin/busybox`, join(root, path)).catch(() => undefined);
  }
  await mkdir(join(root, 'var/www'), { recursive: true });
}

export interface BundleInput {
  readonly rootfs: string;
  readonly args: readonly string[];
  readonly hostname: string;
  readonly cgroupsPath: string;
  readonly etc: EtcFiles;
}

// The defaults berthd passes (src/daemon/main.ts, src/engine/containers.ts).
const MIB = 1024 * 1024;
const TMPFS = [
  { path: '/tmp', sizeBytes: 64 * MIB, mode: '1777' },
  { path: '/var/tmp', sizeBytes: 64 * MIB, mode: '1777' },
  { path: '/run', sizeBytes: 16 * MIB, mode: '755' },
];

export function bundleConfig(b: BundleInput): string {
  const spec = buildSpec({
    rootfs: b.rootfs,
    readonlyRootfs: true,
    args: b.args,
    env: [
      `HOSTNAME=${b.hostname}`,
      'HOME=/root',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: b.hostname,
    terminal: false,
    networkMode: 'none',
    etcFiles: b.etc,
    cgroupsPath: b.cgroupsPath,
    pidsLimit: 4096,
    nofileLimit: hardNofile(),
    tmpfs: TMPFS,
    shmSizeBytes: 64 * MIB,
  });
  return JSON.stringify(spec);
}

export async function writeBundleEtc(dir: string, hostname: string): Promise<EtcFiles> {
  await mkdir(dir, { recursive: true });
  return writeEtcFiles(dir, hostname, 'none');
}

export async function writeBundleConfig(dir: string, b: BundleInput): Promise<void> {
  await writeFile(join(dir, 'config.json'), bundleConfig(b));
}
