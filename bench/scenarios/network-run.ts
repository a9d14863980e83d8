// network-run: what a network costs a short-lived container. `run --rm IMAGE true` on the
// engine's bridge network and with `--network none` (lo only), for berth, docker and podman,
// alternating. berth's bridge is its default network (CNI bridge + host-local + portmap +
// firewall, on the bench berthd's own bridge and subnet); docker's is dockerd's default
// network on a bridge of the bench's, without iptables; podman's its default CNI network.
// The notes give bridge ÷ none per engine and berth ÷ peer per mode, medians and p90s.
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchDaemon } from '../lib/berthd.ts';
import { runFlagsOn, startBerth, type Engine } from '../lib/engines.ts';
import { BENCH_CGROUP } from '../lib/host.ts';
import { addedLines, iptablesLines } from '../lib/netstate.ts';
import { BlockList, isIPv4 } from 'node:net';
import { timedOk } from '../lib/proc.ts';
import { summarize } from '../lib/stats.ts';
import { removePeerContainers, stopBerth, sweepBenchCgroups } from '../lib/teardown.ts';
import type { BenchContext, Measured, Scenario, Subject } from '../lib/types.ts';
import { warmUpEachRow } from '../lib/warmup.ts';

const MODES = ['bridge', 'none'] as const;
type Mode = (typeof MODES)[number];

// How long an engine may take, after teardown removed its containers, to finish removing
// their network state before what is there counts as left behind.
const SETTLE_MS = 5000;

// Per-container iptables state of the CNI plugins: the bridge plugin's masquerading chain
// (CNI-<hash>), the firewall plugin's and portmap's rules for one container address.
// Whether a rule's /32 addresses lie in one of the subnets.
function inSubnets(line: string, subnets: readonly string[]): boolean {
  const blocks = new BlockList();
  for (const s of subnets) {
    const [addr, len] = s.split('/');
    if (addr && len && isIPv4(addr)) blocks.addSubnet(addr, Number(len), 'ipv4');
  }
  return [...line.matchAll(/\b(\d+\.\d+\.\d+\.\d+)\/32\b/g)].some(
    (m) => m[1] !== undefined && blocks.check(m[1], 'ipv4'),
  );
}

const PER_CONTAINER_RULE = /CNI-[0-9a-f]{16,}|CNI-(DN|SN)-[0-9a-f]+|\/32\b/;

// What an engine's containers' networking left, once it had SETTLE_MS to finish.
async function settledNetwork(e: Engine): Promise<string[]> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const left = (await e.networkLeftovers?.()) ?? [];
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(100);
  }
}

const how: Record<Engine['name'], string> = {
  berth: 'CNI bridge + host-local + portmap + firewall, masquerading',
  docker: "the bench's bridge; dockerd with --iptables=false --ip-masq=false: no iptables work",
  podman: "podman's default CNI network: bridge + host-local + portmap + firewall + tuning",
};

export function networkRun(): Scenario {
  let berth: BenchDaemon | undefined;
  const notes: string[] = [];
  // Every wall time taken, per engine and mode (the scenario does its own warm-up).
  const taken = new Map<string, number[]>();
  // Per row: how many network items were still there when the CLI returned.
  const stale = new Map<string, number[]>();
  let iptablesBefore: string[] | undefined;
  // Those with both rows, berth first.
  let engines: Engine[] = [];

  const key = (e: string, m: Mode) => `${e} ${m}`;
  const push = <T>(m: Map<string, T[]>, k: string, v: T) => m.set(k, [...(m.get(k) ?? []), v]);

  const row = (e: Engine, mode: Mode): Subject => {
    const flags = runFlagsOn(e, mode);
    const c = e.command(['run', '--rm', ...flags, e.image, 'true']);
    const shown = e.name === 'podman' ? `--network ${mode} ...` : `--network ${mode}`;
    return {
      name: e.name,
      label: `${e.name} run --rm ${shown} ${e.image} true`,
      role: e.name === 'berth' ? 'subject' : 'peer',
      group: mode,
      async sample(signal): Promise<number | Measured> {
        const ms = await timedOk(c.file, c.args, { env: c.env, signal });
        push(taken, key(e.name, mode), ms);
        // Untimed: `run --rm` returns once the container is removed, network included.
        const left = (await e.networkLeftovers?.()) ?? [];
        if (left.length === 0) return ms;
        push(stale, key(e.name, mode), left.length);
        return { values: { ms }, detail: { networkLeft: left } };
      },
    };
  };

  const ratioNotes = (): string[] => {
    const out: string[] = [];
    const stat = (e: string, m: Mode) => summarize(taken.get(key(e, m)) ?? []);
    const per: string[] = [];
    for (const e of engines) {
      const b = stat(e.name, 'bridge');
      const n = stat(e.name, 'none');
      if (b.n === 0 || n.n === 0) continue;
      per.push(
        `${e.name} ${(b.median / n.median).toFixed(2)}x median ` +
          `(${b.median.toFixed(1)} / ${n.median.toFixed(1)} ms, ` +
          `+${(b.median - n.median).toFixed(1)} ms), ${(b.p90 / n.p90).toFixed(2)}x p90 ` +
          `(${b.p90.toFixed(1)} / ${n.p90.toFixed(1)} ms)`,
      );
    }
    if (per.length > 0) out.push(`bridge ÷ none: ${per.join('; ')}`);
    for (const m of MODES) {
      const a = stat('berth', m);
      const vs: string[] = [];
      for (const e of engines) {
        if (e.name === 'berth') continue;
        const p = stat(e.name, m);
        if (a.n === 0 || p.n === 0) continue;
        vs.push(
          `vs ${e.name} ${(a.median / p.median).toFixed(2)}x median, ` +
            `${(a.p90 / p.p90).toFixed(2)}x p90`,
        );
      }
      if (vs.length > 0) out.push(`berth ÷ peer, ${m}: ${vs.join('; ')}`);
    }
    return out;
  };

  return {
    name: 'network-run',
    description: 'run --rm IMAGE true on the bridge network vs --network none',
    // Warm-up is done in setup (one untimed sample per row; not with --quick), so that every
    // sample the runner takes is also one of the ratios in the notes.
    schedule: (quick) => (quick ? { runs: 4, warmup: 0 } : { runs: 15, warmup: 0 }),

    async setup(ctx: BenchContext): Promise<readonly Subject[]> {
      // Before anything runs: the host's rules, so the teardown can tell what is new.
      iptablesBefore = await iptablesLines();
      ctx.log('starting berthd');
      const b = await startBerth(BENCH_CGROUP);
      berth = b.d;
      engines = [b.e];
      for (const p of ctx.peers) {
        if (p.bridgeNetwork) engines.push(p);
        else {
          notes.push(
            `${p.name} left out: no bridge network (${p.bridgeProblem ?? 'not set up by the bench'})`,
          );
        }
      }
      const subjects = engines.flatMap((e) => MODES.map((m) => row(e, m)));
      for (const e of engines) {
        const n = e.bridgeNetwork;
        if (n) notes.push(`${e.name} bridge: ${n.bridge} ${n.subnet} (${how[e.name]})`);
      }
      await warmUpEachRow(subjects, ctx);
      taken.clear();
      stale.clear();
      return subjects;
    },

    async teardown(ctx: BenchContext): Promise<string[]> {
      const left = await removePeerContainers(ctx.peers);
      for (const p of ctx.peers) left.push(...(await settledNetwork(p)));
      // berth's network state is in its leftovers (bridge ports, leases, CNI results, netns).
      left.push(...(await stopBerth(berth, { settleMs: SETTLE_MS })));
      berth = undefined;
      if (iptablesBefore) {
        const added = addedLines(iptablesBefore, (await iptablesLines()) ?? iptablesBefore);
        // Only rules of the engines measured here: the host may run other networks at the
        // same time (a test suite's daemons), whose rules come and go on their own.
        const subnets = engines.flatMap((e) => (e.bridgeNetwork ? [e.bridgeNetwork.subnet] : []));
        const ours = added.filter(
          (l) => !/\b\d+\.\d+\.\d+\.\d+\/32\b/.test(l) || inSubnets(l, subnets),
        );
        const mine = ours.filter((l) => PER_CONTAINER_RULE.test(l));
        const shared = ours.filter((l) => !PER_CONTAINER_RULE.test(l));
        left.push(...mine.map((l) => `iptables: ${l}`));
        if (shared.length > 0) {
          notes.push(
            `iptables lines added during the scenario and kept (chains the CNI plugins make ` +
              `once and share): ${shared.join(' | ')}`,
          );
        }
        iptablesBefore = undefined;
      }
      left.push(...sweepBenchCgroups());
      return left;
    },

    notes: () => {
      const st = [...stale].map(
        ([row, v]) =>
          `${row}: ${v.length} run(s) returned with network state still present ` +
          `(up to ${Math.max(...v)} items; see the samples' networkLeft)`,
      );
      return [...notes, ...ratioNotes(), ...st];
    },
  };
}
