// docker-cli-run: the real docker CLI against berthd's Docker-compatible socket
// (RUN_ROOT/docker.sock) and against the bench's dockerd, alternating, in one run:
// `docker run --rm --network none IMAGE true` timed end to end, the same CLI binary for
// both. berth's Docker surface gives a container Docker's default writable root (berth's
// bounded writable layer: an ext4 image, loop-mounted); a `--read-only` row and berth's
// own CLI (`berth run --rm`, read-only by default) show what that and the translation cost.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchDaemon } from '../lib/berthd.ts';
import { startBerth } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { timedOk, waitUntil } from '../lib/proc.ts';
import { summarize } from '../lib/stats.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Scenario, Subject } from '../lib/types.ts';

// The docker CLI the docker peer uses too (Debian's, the daemon's release).
const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export function dockerCliRun(): Scenario {
  let berth: BenchDaemon | undefined;
  let config: string | undefined;
  const taken = new Map<string, number[]>();
  const stale: number[] = [];
  const notes: string[] = [];

  const push = (k: string, v: number) => taken.set(k, [...(taken.get(k) ?? []), v]);

  return {
    name: 'docker-cli-run',
    description:
      "docker run --rm --network none busybox true: the docker CLI on berthd's docker.sock " +
      'vs on dockerd',

    // Warm-up is one untimed sample per row in setup, so the notes' ratios are over the
    // table's samples.
    schedule: (quick) => (quick ? { runs: 4, warmup: 0 } : { runs: 20, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const d = b.d;
      const sock = join(d.runRoot, 'docker.sock');
      if (!existsSync(sock)) throw new Error(`berthd serves no Docker API at ${sock}`);
      // The CLI's own config dir: nothing of the user's ~/.docker is read or written.
      config = await mkdtemp('/tmp/bb-dockercli-');
      const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: config };
      delete env['DOCKER_HOST'];
      delete env['DOCKER_CONTEXT'];
      const onBerth = (args: readonly string[]) => ['-H', `unix://${sock}`, ...args];
      // Fail early, untimed, if the CLI cannot talk to it at all.
      await timedOk(DOCKER_CLI, onBerth(['version']), { env, signal: ctx.signal });

      const dockerRow = (name: string, label: string, args: readonly string[]): Subject => ({
        name,
        label,
        role: name === 'berth' ? 'subject' : 'context',
        async sample(signal) {
          const ms = await timedOk(DOCKER_CLI, onBerth(args), { env, signal });
          push(name, ms);
          // Untimed: --rm returned once the container was removed.
          const left = d.leftovers();
          if (left.length > 0) stale.push(left.length);
          return ms;
        },
      });
      const subjects: Subject[] = [
        dockerRow('berth', 'docker run --rm --network none busybox true (berthd docker.sock)', [
          'run',
          '--rm',
          '--network',
          'none',
          'busybox',
          'true',
        ]),
        dockerRow(
          'berth-ro',
          'docker run --rm --read-only --network none busybox true (berthd docker.sock)',
          ['run', '--rm', '--read-only', '--network', 'none', 'busybox', 'true'],
        ),
        {
          name: 'berth-cli',
          label: 'berth run --rm --network none busybox true (native CLI)',
          role: 'context',
          async sample(signal) {
            const ms = await timedOk(
              process.execPath,
              d.cliArgs(['run', '--rm', '--network', 'none', 'busybox', 'true']),
              { env: d.env, signal },
            );
            push('berth-cli', ms);
            return ms;
          },
        },
      ];
      const docker = ctx.peers.find((p) => p.name === 'docker');
      if (docker) {
        const c = docker.command(['run', '--rm', ...docker.runFlags, docker.image, 'true']);
        if (c.file !== DOCKER_CLI)
          notes.push(`dockerd is driven by ${c.file}, berthd by ${DOCKER_CLI}`);
        subjects.push({
          name: 'docker',
          label: `docker run --rm --network none ${docker.image} true (dockerd)`,
          role: 'peer',
          async sample(signal) {
            const ms = await timedOk(c.file, c.args, { env: c.env, signal });
            push('docker', ms);
            return ms;
          },
        });
      } else notes.push('no docker peer: berthd rows only (--peers docker to compare)');
      // Untimed: each row works at all.
      for (const s of subjects) await s.sample(ctx.signal);
      taken.clear();
      stale.length = 0;
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      if (berth) {
        const d = berth;
        await waitUntil(() => d.leftovers().length === 0, 5000);
        left.push(...(await stopBerth(d)));
        berth = undefined;
      }
      if (config) {
        await rm(config, { recursive: true, force: true });
        config = undefined;
      }
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => {
      const out = [...notes];
      const a = summarize(taken.get('berth') ?? []);
      const p = summarize(taken.get('docker') ?? []);
      if (a.n > 0 && p.n > 0)
        out.push(
          `berthd ÷ dockerd through the same docker CLI: ${(a.median / p.median).toFixed(2)}x ` +
            `median (${a.median.toFixed(1)} / ${p.median.toFixed(1)} ms), ` +
            `${(a.p90 / p.p90).toFixed(2)}x p90`,
        );
      const ro = summarize(taken.get('berth-ro') ?? []);
      if (a.n > 0 && ro.n > 0)
        out.push(
          `the writable root (Docker's default) costs ${(a.median - ro.median).toFixed(1)} ms ` +
            `a run at the median over --read-only`,
        );
      if (stale.length > 0)
        out.push(
          `${stale.length} docker run --rm on berthd returned with state still present ` +
            `(up to ${Math.max(...stale)} items; removed later)`,
        );
      return out;
    },
  };
}
