// run-rm: one short-lived container, created, run to exit and removed, timed end to end from
// the bench: `berth run --rm --network none busybox true` (CLI process, API, monitor, runc,
// clean-up) against bare `runc run` of an equivalent bundle (runc run deletes the container
// when it exits, so both include removal), and against `docker run --rm` and `podman run
// --rm` of the same root filesystem when those peers are set up. No row has a network but
// lo (berth's default bridge is network-run's). `berth version` is timed as context: Node
// start-up plus one API call.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BareRunc } from '../lib/bare-runc.ts';
import { BenchDaemon } from '../lib/berthd.ts';
import { BENCH_CGROUP, cgroupLeftovers, RUNC, runcStateLeftovers } from '../lib/host.ts';
import { run, timedOk, waitUntil } from '../lib/proc.ts';
import { removePeerContainers, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Scenario, Subject } from '../lib/types.ts';

export function runRm(): Scenario {
  let daemon: BenchDaemon | undefined;
  let runc: BareRunc | undefined;
  // Per berth sample that returned with state still present: how many items.
  const stale: number[] = [];

  const teardown = async (ctx: BenchContext): Promise<string[]> => {
    const left = await removePeerContainers(ctx.peers);
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
    if (runc) {
      // runc run deletes what it made when the container exits: any state is a leftover.
      left.push(...runcStateLeftovers(runc.stateRoot).map((l) => `runc: ${l}`));
      left.push(...(await runc.remove()));
      runc = undefined;
    }
    left.push(...cgroupLeftovers(BENCH_CGROUP).map((g) => `cgroup ${g}`));
    left.push(...sweepBenchCgroups());
    return left;
  };

  return {
    name: 'run-rm',
    description:
      'berth run --rm --network none busybox true vs bare runc run of an equivalent bundle ' +
      '(and peers)',

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      ctx.log('starting berthd');
      const d = await BenchDaemon.start(BENCH_CGROUP);
      daemon = d;
      const bare = await BareRunc.mkdtemp('benchrunc');
      runc = bare;
      ctx.log(`building bundle in ${bare.dir}`);
      await bare.build();

      // Fail early, untimed, if either side does not work at all.
      const v = await d.cli(['version']);
      if (v.code !== 0) throw new Error(`berth version failed: ${v.stderr}`);

      const berthRun: Subject = {
        name: 'berth',
        label: 'berth run --rm --network none busybox true',
        role: 'subject',
        async sample(signal) {
          const ms = await timedOk(
            process.execPath,
            d.cliArgs(['run', '--rm', '--network', 'none', 'busybox', 'true']),
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
          const { id, runArgs } = await bare.prepare(['true']);
          const ms = await timedOk(RUNC, runArgs, { signal });
          // runc run (without --keep) deletes the container once it exits; if that ever
          // changes, the comparison with berth --rm would be unfair, so stop here.
          if (existsSync(join(bare.stateRoot, id))) {
            await run(RUNC, ['--root', bare.stateRoot, 'delete', '--force', id]);
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
