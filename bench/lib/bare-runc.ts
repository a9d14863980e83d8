// Bare runc on a bundle of the bench's (bundle.ts: berth's busybox root filesystem and
// berth's own spec), in a temporary directory with its own runc state root: the floor or
// the context row scenarios set berth against.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { EtcFiles } from '../../src/network/etc-files.ts';
import { makeBusyboxRootfs, writeBundleConfig, writeBundleEtc } from './bundle.ts';
import { BENCH_CGROUP, mountsUnder, runcDeleteAll } from './host.ts';

export class BareRunc {
  readonly dir: string;
  readonly hostname: string;
  readonly rootfs: string;
  readonly bundle: string;
  // runc --root.
  readonly stateRoot: string;
  private etc: EtcFiles | undefined;
  private n = 0;

  private constructor(dir: string, hostname: string) {
    this.dir = dir;
    this.hostname = hostname;
    this.rootfs = join(dir, 'rootfs');
    this.bundle = join(dir, 'bundle');
    this.stateRoot = join(dir, 'runc');
  }

  // The directory only: build() fills it, and remove() takes away whatever is there.
  static async mkdtemp(hostname: string): Promise<BareRunc> {
    return new BareRunc(await mkdtemp('/tmp/bb-runc-'), hostname);
  }

  async build(): Promise<void> {
    await makeBusyboxRootfs(this.rootfs);
    this.etc = await writeBundleEtc(this.bundle, this.hostname);
  }

  // Writes config.json for a new container (cgroup under the bench's parent) that runs
  // args; returns its id and the arguments of `runc run` for it
  // (after host.ts RUNC).
  async prepare(args: readonly string[]): Promise<{ id: string; runArgs: string[] }> {
    if (!this.etc) throw new Error('bare runc: build() first');
    const id = `bench-${process.pid}-${this.n++}-${randomBytes(3).toString('hex')}`;
    await writeBundleConfig(this.bundle, {
      rootfs: this.rootfs,
      args,
      hostname: this.hostname,
      cgroupsPath: `/${BENCH_CGROUP}/${id}`,
      etc: this.etc,
    });
    return { id, runArgs: ['--root', this.stateRoot, 'run', '--bundle', this.bundle, id] };
  }

  // Deletes any runc state, then the directory unless something is still mounted in it;
  // returns those mounts.
  async remove(): Promise<string[]> {
    await runcDeleteAll(this.stateRoot);
    const left = mountsUnder(this.dir).map((m) => `runc: mount ${m}`);
    if (mountsUnder(this.dir).length === 0) await rm(this.dir, { recursive: true, force: true });
    return left;
  }
}
