// pull: a cold pull of a large multi-layer image (~200 MB of tar in 5 gzip layers of real
// files of this host; --quick ~20 MB) from Debian's docker-registry on a loopback port:
// `berth pull` against the bench's berthd, `skopeo copy` of the image to an OCI directory
// (download and digest checks only, no unpack: the floor for the transfer), and `docker
// pull` and `podman pull` when those peers are set up, alternating. After every pull the
// image is removed, untimed (berth rmi, which deletes its unreferenced layers and blobs;
// docker rmi; podman rmi; rm -rf of skopeo's directory), and the engine's stores must be
// back to what they held before the first pull, so that every pull is cold.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestRegistry } from '../../test/helpers/registry.ts';
import { trackPid, untrackPid, type BenchDaemon } from '../lib/berthd.ts';
import { cli, startBerth, type Cmd, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP, CLIENT_CGROUP } from '../lib/host.ts';
import { buildLayout, type LayerSpec, type LayoutImage } from '../lib/oci-image.ts';
import { HostTraces, which } from '../lib/peers.ts';
import { pidAlive, run, runOk } from '../lib/proc.ts';
import { CpuGroup, procCpuNs } from '../lib/sysstat.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { MB } from '../lib/workload.ts';

const PULL_TIMEOUT_MS = 10 * 60_000;

// The host's multiarch library directory (Debian).
const LIBDIR = `usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;

// Layers in image order, MB of file content each (~200 MB; --quick ~20 MB): shared
// libraries, data and documentation, binaries, headers, system binaries.
const LAYERS: readonly { root: string; mb: number; quickMb: number }[] = [
  { root: LIBDIR, mb: 70, quickMb: 7 },
  { root: 'usr/share', mb: 50, quickMb: 5 },
  { root: 'usr/bin', mb: 40, quickMb: 4 },
  { root: 'usr/include', mb: 20, quickMb: 2 },
  { root: 'usr/sbin', mb: 20, quickMb: 2 },
];

// skopeo keeps a blob-info cache in /var/lib/containers/cache when run as root.
const SKOPEO_TRACES = [{ path: '/var/lib/containers' }];

// The entries of these directories (the image stores of an engine), for telling whether a
// pull's layers and blobs are gone again.
async function entries(dirs: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of dirs) {
    for (const e of await readdir(d).catch(() => [] as string[])) out.add(join(d, e));
  }
  return out;
}

// What is in the stores now and was not before.
async function added(dirs: readonly string[], before: ReadonlySet<string>): Promise<string[]> {
  return [...(await entries(dirs))].filter((e) => !before.has(e));
}

// The directories a peer keeps image layers in, from its own account of its storage.
async function peerStoreDirs(e: Engine): Promise<string[]> {
  if (e.name === 'docker') {
    const r = await cli(e, ['info', '--format', '{{.DockerRootDir}} {{.Driver}}']);
    const [root, driver] = r.stdout.trim().split(/\s+/);
    if (!root || !driver) throw new Error(`docker info: "${r.stdout.trim()}"`);
    return [
      join(root, driver),
      join(root, 'image', driver, 'layerdb', 'sha256'),
      join(root, 'image', driver, 'imagedb', 'content', 'sha256'),
    ];
  }
  const r = await cli(e, ['info', '--format', '{{.Store.GraphRoot}} {{.Store.GraphDriverName}}']);
  const [root, driver] = r.stdout.trim().split(/\s+/);
  if (!root || !driver) throw new Error(`podman info: "${r.stdout.trim()}"`);
  return [join(root, driver), join(root, `${driver}-images`)];
}

// An image in the registry: what every pull of it downloads.
interface Pushed {
  readonly ref: string;
  readonly layers: number;
  // The gzip layers as the registry serves them.
  readonly bytes: number;
}

// Builds the image from these layers in `dir` and pushes it as repo:v1; checks that the
// registry serves the layers pushed.
async function publish(
  reg: TestRegistry,
  dir: string,
  repo: string,
  specs: readonly LayerSpec[],
  ctx: BenchContext,
): Promise<{ pushed: Pushed; img: LayoutImage; pushMs: number }> {
  ctx.log(`building ${repo} (${specs.length} layers) in ${dir}`);
  const img = await buildLayout(dir, 'v1', specs, ctx.signal);
  const t0 = performance.now();
  await reg.push(img.dir, 'v1', `${repo}:v1`);
  const pushMs = performance.now() - t0;
  const m = await fetch(`http://${reg.host}/v2/${repo}/manifests/v1`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  const manifest = (await m.json()) as { layers?: { digest: string; size: number }[] };
  const served = manifest.layers ?? [];
  const bytes = served.reduce((a, l) => a + l.size, 0);
  if (served.length !== img.layers.length || bytes !== img.gzipBytes) {
    throw new Error(
      `the registry serves ${served.length} layers of ${bytes} bytes for ${repo}, ` +
        `not the ${img.layers.length} of ${img.gzipBytes} pushed`,
    );
  }
  return { pushed: { ref: `${reg.host}/${repo}:v1`, layers: served.length, bytes }, img, pushMs };
}

function describe(img: LayoutImage): string {
  const mb = (n: number) => (n / MB).toFixed(1);
  const layers = img.layers
    .map((l) => `/${l.root} ${mb(l.tarBytes)} -> ${mb(l.size)} MB (${l.entries} entries)`)
    .join(', ');
  return (
    `image: ${img.layers.length} gzip layers, ${mb(img.tarBytes)} MB of tar, ` +
    `${mb(img.gzipBytes)} MB gzip (${(img.tarBytes / img.gzipBytes).toFixed(2)}x): ${layers}; ` +
    `built in ${(img.buildMs / 1000).toFixed(1)} s (GNU tar, zlib gzip level 6)`
  );
}

interface Row {
  readonly name: string;
  readonly label: string;
  readonly role: Subject['role'];
  readonly pull: Cmd;
  // Cumulative CPU time (ns) of the engine's daemons, where the pull's work is done
  // (berthd; dockerd, containerd and what they run); none for skopeo and podman, whose CLI
  // does it.
  agentCpuNs?(): number;
  // Untimed, after the pull: that it brought the image (throws if not).
  check(): Promise<void>;
  // Untimed: removes what the pull brought.
  remove(): Promise<void>;
  // What is still there of the image after remove().
  left(): Promise<string[]>;
}

// How each engine pulls an image and removes it again: a row per engine.
type RowMaker = (p: Pushed) => Row;

interface Pulled {
  readonly ms: number;
  // CPU of the daemons and of the CLI (children included) during the pull.
  readonly agentCpuS: number;
  readonly cliCpuS: number;
  readonly removeMs: number;
}

// One pull of the row's image, timed, its CLI in the bench's CPU group; then its removal
// and the check that nothing of it is left (untimed).
async function pullOnce(r: Row, clients: CpuGroup, signal: AbortSignal): Promise<Pulled> {
  let ms: number;
  const agent0 = r.agentCpuNs?.() ?? 0;
  const cli0 = clients.usageNs();
  try {
    const w = clients.wrap(r.pull.file, r.pull.args);
    ms = (await runOk(w.file, w.args, { env: r.pull.env, signal, timeoutMs: PULL_TIMEOUT_MS })).ms;
  } catch (e) {
    await r.remove().catch(() => undefined);
    throw e;
  }
  const agentCpuS = ((r.agentCpuNs?.() ?? 0) - agent0) / 1e9;
  const cliCpuS = (clients.usageNs() - cli0) / 1e9;
  try {
    await r.check();
  } catch (e) {
    await r.remove().catch(() => undefined);
    throw e;
  }
  const t0 = performance.now();
  await r.remove();
  const removeMs = performance.now() - t0;
  const left = await r.left();
  if (left.length > 0) {
    throw new Error(
      `${r.name}: still there after the removal, the next pull would not be cold: ` +
        left.slice(0, 10).join(', '),
    );
  }
  return { ms, agentCpuS, cliCpuS, removeMs };
}

export function pull(): Scenario {
  let berth: BenchDaemon | undefined;
  let registry: TestRegistry | undefined;
  let work: string | undefined;
  let traces: HostTraces | undefined;
  let clients: CpuGroup | undefined;
  const notes: string[] = [];
  // Every row made, for teardown to remove what a pull cut short brought.
  const made: Row[] = [];

  // Its store before any pull (the built-in busybox image is there).
  const berthRows = async (d: BenchDaemon, e: Engine): Promise<RowMaker> => {
    const imagesDir = join(d.root, 'images');
    const dirs = [
      imagesDir,
      join(imagesDir, 'layers'),
      join(imagesDir, 'blobs', 'sha256'),
      join(imagesDir, 'blobs', 'partial'),
    ];
    const before = await entries(dirs);
    return (p) => {
      const has = async () =>
        (await d.cli(['image', 'inspect', p.ref], { stdout: 'ignore' })).code === 0;
      return {
        name: 'berth',
        label: `berth pull ${p.ref}`,
        role: 'subject',
        pull: e.command(['pull', p.ref]),
        agentCpuNs: () => (d.pid === undefined ? 0 : (procCpuNs(d.pid) ?? 0)),
        async check() {
          if (!(await has())) throw new Error(`berth: no image ${p.ref} after the pull`);
          const layers = (await added([join(imagesDir, 'layers')], before)).length;
          if (layers !== p.layers) {
            throw new Error(`berth: ${layers} new layers after the pull, not ${p.layers}`);
          }
        },
        async remove() {
          if (await has()) await d.cliOk(['rmi', p.ref], { timeoutMs: 120_000 });
        },
        // rmi deletes the image's unreferenced layers and blobs before it returns; give it
        // a moment anyway before calling what is there a leftover.
        async left() {
          let left = await added(dirs, before);
          for (const deadline = Date.now() + 5000; left.length > 0 && Date.now() < deadline;) {
            await sleep(100);
            left = await added(dirs, before);
          }
          return left.map((x) => `berth: ${x}`);
        },
      };
    };
  };

  const skopeoRows =
    (dest: string): RowMaker =>
    (p) => ({
      name: 'skopeo',
      label: 'skopeo copy (download only, no unpack)',
      role: 'baseline',
      pull: {
        file: 'skopeo',
        args: [
          '--insecure-policy',
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${p.ref}`,
          `oci:${dest}:x`,
        ],
        env: process.env,
      },
      async check() {
        const blobs = await readdir(join(dest, 'blobs', 'sha256')).catch(() => []);
        // The layers, the config and the manifest.
        if (blobs.length !== p.layers + 2) {
          throw new Error(`skopeo: ${blobs.length} blobs in ${dest}, not ${p.layers + 2}`);
        }
      },
      remove: () => rm(dest, { recursive: true, force: true }),
      left: () => Promise.resolve(existsSync(dest) ? [`skopeo: ${dest}`] : []),
    });

  const peerRows = async (e: Engine): Promise<RowMaker> => {
    const dirs = await peerStoreDirs(e);
    const before = await entries(dirs);
    const tls = e.name === 'podman' ? ['--tls-verify=false'] : [];
    return (p) => {
      const has = async () => {
        const c = e.command(['image', 'inspect', p.ref]);
        return (await run(c.file, c.args, { env: c.env, stdout: 'ignore' })).code === 0;
      };
      return {
        name: e.name,
        label: [e.name, 'pull', ...tls, p.ref].join(' '),
        role: 'peer',
        pull: e.command(['pull', ...tls, p.ref]),
        ...(e.groupCpuNs ? { agentCpuNs: () => e.groupCpuNs?.() ?? 0 } : {}),
        async check() {
          if (!(await has())) throw new Error(`${e.name}: no image ${p.ref} after the pull`);
        },
        async remove() {
          if (await has()) await cli(e, ['rmi', p.ref], { timeoutMs: 120_000 });
        },
        async left() {
          const out = (await added(dirs, before)).map((x) => `${e.name}: ${x}`);
          if (await has()) out.push(`${e.name}: image ${p.ref}`);
          return out;
        },
      };
    };
  };

  return {
    name: 'pull',
    description:
      'cold pull of a large multi-layer image from a loopback registry (docker-registry)',
    metrics: [
      { key: 'wall', label: 'wall s', better: 'lower', digits: 2 },
      { key: 'mbps', label: 'MB/s (gzip bytes)', better: 'higher', digits: 1 },
      { key: 'cpu', label: 'CPU s', better: 'lower', digits: 2 },
    ],
    // A round of the full image takes ~30 s with both peers: the warm-up is a pull of the
    // small image per row in set-up instead (not with --quick, whose image is that one).
    schedule: (quick) => (quick ? { runs: 2, warmup: 1 } : { runs: 3, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      const missing = ['docker-registry', 'skopeo'].filter((b) => which(b) === undefined);
      if (missing.length > 0) {
        throw new Error(
          `${missing.join(' and ')} not installed (scripts/install.sh installs them)`,
        );
      }
      traces = new HostTraces(SKOPEO_TRACES);
      const cg = CpuGroup.create(CLIENT_CGROUP);
      clients = cg;
      const dir = await mkdtemp('/tmp/bb-pull-');
      work = dir;
      ctx.log('starting docker-registry');
      const reg = await TestRegistry.start();
      registry = reg;
      // Killed with berthd on a forced exit.
      if (reg.pid > 0) trackPid(reg.pid);
      const specs = (quick: boolean): LayerSpec[] =>
        LAYERS.map((l) => ({ root: l.root, budget: (quick ? l.quickMb : l.mb) * MB }));
      const big = await publish(reg, join(dir, 'big'), 'bench/big', specs(ctx.quick), ctx);
      notes.push(
        describe(big.img),
        ...big.img.warnings,
        `registry: docker-registry on ${reg.host} (filesystem storage under /tmp, plain ` +
          `HTTP); skopeo pushed the image in ${(big.pushMs / 1000).toFixed(1)} s; MB/s is ` +
          `the ${(big.pushed.bytes / MB).toFixed(1)} MB of gzip layers over the wall time`,
      );
      const small = ctx.quick
        ? undefined
        : await publish(reg, join(dir, 'small'), 'bench/small', specs(true), ctx);

      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      const makers: RowMaker[] = [await berthRows(b.d, b.e), skopeoRows(join(dir, 'skopeo'))];
      for (const p of ctx.peers) makers.push(await peerRows(p));

      if (small) {
        ctx.log('warm-up: a pull of the small image per row');
        const took: string[] = [];
        for (const m of makers) {
          const r = m(small.pushed);
          made.push(r);
          const w = await pullOnce(r, cg, ctx.signal);
          took.push(`${r.name} ${(w.ms / 1000).toFixed(2)} s`);
        }
        notes.push(
          `warm-up (untimed, in set-up): one pull of a small image per row ` +
            `(${(small.img.tarBytes / MB).toFixed(1)} MB of tar, ` +
            `${(small.pushed.bytes / MB).toFixed(1)} MB gzip, the --quick image): ${took.join(', ')}`,
        );
      }
      const rows = makers.map((m) => m(big.pushed));
      made.push(...rows);
      const bytes = big.pushed.bytes;
      return rows.map((r): Subject => ({
        name: r.name,
        label: r.label,
        role: r.role,
        async sample(signal): Promise<Measured> {
          const x = await pullOnce(r, cg, signal);
          const s = x.ms / 1000;
          return {
            values: { wall: s, mbps: bytes / MB / s, cpu: x.agentCpuS + x.cliCpuS },
            detail: { agentCpuS: x.agentCpuS, cliCpuS: x.cliCpuS, removeMs: x.removeMs },
          };
        },
      }));
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      // A pull cut short: take away what it brought, then report what stays (once: the
      // small and the big image's rows look at the same stores). Not berth's store, which
      // goes with its data root (and keeps what a pull cut short downloaded by design, to
      // resume it): stopBerth reports what berthd leaves on the host.
      const stays = new Set<string>();
      for (const r of made.splice(0)) {
        await r.remove().catch(() => undefined);
        if (r.name === 'berth') continue;
        for (const l of await r.left().catch((e: unknown) => [`${r.name}: ${String(e)}`])) {
          stays.add(l);
        }
      }
      left.push(...stays);
      left.push(...(await stopBerth(berth)));
      berth = undefined;
      if (registry) {
        const pid = registry.pid;
        await registry.stop();
        untrackPid(pid);
        if (pid > 0 && pidAlive(pid)) left.push(`docker-registry ${pid} still running`);
        if (existsSync(registry.dir)) left.push(`registry: ${registry.dir}`);
        registry = undefined;
      }
      if (work) {
        await rm(work, { recursive: true, force: true });
        work = undefined;
      }
      if (traces) {
        left.push(...(await traces.remove()));
        traces = undefined;
      }
      left.push(...sweepBenchCgroups(clients));
      clients = undefined;
      return left;
    },

    notes: () => [...notes],
  };
}
