// run-rm: one short-lived container, created, run to exit and removed, timed end to end from
// the bench: `berth run --rm busybox true` (CLI process, API, monitor, runc, clean-up) against
// bare `runc run` of an equivalent bundle (runc run deletes the container when it exits, so
// both include removal), and against `docker run --rm` and `podman run --rm` of the same
// root filesystem when those peers are set up. `berth version` is timed as context: Node
// start-up plus one API call.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BenchDaemon } from '../lib/berthd.ts';
import { makeBusyboxRootfs, writeBundleConfig, writeBundleEtc } from '../lib/bundle.ts';
import {
  cgroupLeftovers,
  mountsUnder,
  RUNC,
  runcDeleteAll,
  runcStateLeftovers,
  sweepCgroups,
} from '../lib/host.ts';
import { cli } from '../lib/engines.ts';
import { run, timedOk, waitUntil } from '../lib/proc.ts';
import type { BenchContext, Scenario, Subject } from '../lib/types.ts';

export const CGROUP_PARENT = 'berth-bench';

export function runRm(): Scenario {
  let daemon: BenchDaemon | undefined;
  let tmp: string | undefined;
  // Per berth sample that returned with state still present: how many items.
  const stale: number[] = [];

  const teardown = async (ctx: BenchContext): Promise<string[]> => {
    const left: string[] = [];
    for (const p of ctx.peers) {
      const r = await cli(p, ['ps', '-aq']).catch(() => undefined);
      const ids = r?.stdout.split('\n').filter(Boolean) ?? [];
      for (const id of ids) left.push(`${p.name}: container ${id}`);
      if (ids.length > 0) await cli(p, p.rmArgs(ids)).catch(() => undefined);
    }
    if (daemon) {
      // Measured before stopping berthd: this is what `berth run --rm` itself leaves. An
      // interrupted sample may still be being removed, so give berthd a moment to settle.
      const d = daemon;
      await waitUntil(() => d.leftovers().length === 0, 5000);
      left.push(...d.leftovers().map((l) => `berth: ${l}`));
      const ps = await daemon.cli(['ps', '-a', '-q']);
      for (const id of ps.stdout.split('\n').filter(Boolean)) left.push(`berth: container ${id}`);
      left.push(...(await daemon.stop()).map((l) => `berth teardown: ${l}`));
      daemon = undefined;
    }
    if (tmp) {
      const runcRoot = join(tmp, 'runc');
      left.push(...runcStateLeftovers(runcRoot).map((l) => `runc: ${l}`));
      await runcDeleteAll(runcRoot);
      for (const m of mountsUnder(tmp)) left.push(`runc: mount ${m}`);
      if (mountsUnder(tmp).length === 0) await rm(tmp, { recursive: true, force: true });
      tmp = undefined;
    }
    left.push(...cgroupLeftovers(CGROUP_PARENT).map((g) => `cgroup ${g}`));
    for (const d of sweepCgroups(CGROUP_PARENT)) left.push(`cgroup still busy: ${d}`);
    return left;
  };

  return {
    name: 'run-rm',
    description: 'berth run --rm busybox true vs bare runc run of an equivalent bundle (and peers)',

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      ctx.log('starting berthd');
      const d = await BenchDaemon.start(CGROUP_PARENT);
      daemon = d;
      const dir = await mkdtemp('/tmp/bb-runc-');
      tmp = dir;
      ctx.log(`building bundle in ${dir}`);
      const rootfs = join(dir, 'rootfs');
      await makeBusyboxRootfs(rootfs);
      const bundle = join(dir, 'bundle');
      const hostname = 'benchrunc';
      const etc = await writeBundleEtc(bundle, hostname);
      const runcRoot = join(dir, 'runc');

      // Fail early, untimed, if either side does not work at all.
      const v = await d.cli(['version']);
      if (v.code !== 0) throw new Error(`berth version failed: ${v.stderr}`);

      let n = 0;
      const berthRun: Subject = {
        name: 'berth',
        label: 'berth run --rm busybox true',
        role: 'subject',
        async sample(signal) {
          const ms = await timedOk(
            process.execPath,
            d.cliArgs(['run', '--rm', 'busybox', 'true']),
            { env: d.env, signal },
          );
          // Untimed: --rm waits for removal, so nothing should be left when the CLI returns.
          const left = d.leftovers();
          if (left.length > 0) stale.push(left.length);
          return ms;
        },
      };
      const runcRun: Subject = {
        name: 'runc',
        label: 'runc run (equivalent bundle)',
        role: 'baseline',
        async sample(signal) {
          const id = `bench-${process.pid}-${n++}-${randomBytes(3).toString('hex')}`;
          await writeBundleConfig(bundle, {
            rootfs,
            args: ['true'],
            hostname,
            cgroupsPath: `/${CGROUP_PARENT}/${id}`,
            etc,
          });
          const ms = await timedOk(RUNC, ['--root', runcRoot, 'run', '--bundle', bundle, id], {
            signal,
          });
          // runc run (without --keep) deletes the container once it exits; if that ever
          // changes, the comparison with berth --rm would be unfair, so stop here.
          if (existsSync(join(runcRoot, id))) {
            await run(RUNC, ['--root', runcRoot, 'delete', '--force', id]);
            throw new Error(`runc run left state for ${id}: add runc delete to the timed region`);
          }
          return ms;
        },
      };
      const version: Subject = {
        name: 'version',
        label: 'berth version (Node start + 1 API call)',
        role: 'context',
        sample: (signal) =>
          timedOk(process.execPath, d.cliArgs(['version']), { env: d.env, signal }),
      };
      const peers: Subject[] = ctx.peers.map((p) => {
        const c = p.command(['run', '--rm', ...p.runFlags, p.image, 'true']);
        return {
          name: p.name,
          label: `${p.name} run --rm --network none ${p.image} true`,
          role: 'peer',
          sample: (signal) => timedOk(c.file, c.args, { env: c.env, signal }),
        };
      });
      for (const p of peers) {
        // Untimed: the image is there and runs.
        await p.sample(ctx.signal);
      }
      return [berthRun, runcRun, version, ...peers];
    },

    teardown,

    notes: () =>
      stale.length === 0
        ? []
        : [
            `${stale.length} berth run --rm returned with state still present ` +
              `(up to ${Math.max(...stale)} items; removed later)`,
          ],
  };
}
