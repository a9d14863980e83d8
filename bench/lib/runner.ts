// Runs one scenario: set-up, warm-up rounds, then measured rounds in which every subject
// takes one sample in turn (berth, runc, docker, berth, runc, docker, ...), so drift in
// machine load hits all subjects alike; the same again for each further phase of a
// scenario that has them (Scenario.nextPhase). Teardown always runs. A peer that fails is
// dropped from the remaining rounds; any other failure ends the scenario.
import { summarize, type Stats } from './stats.ts';
import {
  WALL_MS,
  type BenchContext,
  type Measured,
  type Metric,
  type Role,
  type Scenario,
  type Subject,
} from './types.ts';

export interface SubjectResult {
  readonly name: string;
  readonly label: string;
  readonly role: Role;
  readonly group: string;
  readonly warmup: Measured[];
  readonly samples: Measured[];
  // Per metric key, over the measured samples.
  readonly stats: Record<string, Stats>;
  // First metric: median / the baseline's median; undefined without a baseline.
  readonly ratio: number | undefined;
  readonly error?: string;
}

// berth / peer, per metric, for the rows of one group.
export interface Comparison {
  readonly group: string;
  readonly subject: string;
  readonly peer: string;
  readonly ratios: Record<string, number>;
}

export interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly runs: number;
  readonly warmup: number;
  readonly metrics: readonly Metric[];
  readonly subjects: SubjectResult[];
  readonly comparisons: Comparison[];
  readonly leftovers: string[];
  readonly notes: string[];
  // Set-up, rounds and teardown.
  readonly durationMs: number;
  readonly error?: string;
}

export interface RunOptions {
  // Undefined: the scenario's own schedule.
  readonly runs: number | undefined;
  readonly warmup: number | undefined;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

// Whether a subject with at most `max` samples takes one in measured round k of `runs`:
// max of them, evenly spread (5 of 10: rounds 2, 4, 6, 8, 10).
function takesSample(k: number, runs: number, max: number | undefined): boolean {
  if (max === undefined || max >= runs) return true;
  return Math.floor(((k + 1) * max) / runs) > Math.floor((k * max) / runs);
}

export async function runScenario(
  s: Scenario,
  o: RunOptions,
  ctx: BenchContext,
): Promise<ScenarioResult> {
  const t0 = performance.now();
  const metrics = s.metrics ?? [WALL_MS];
  const own =
    s.schedule?.(ctx.quick) ?? (ctx.quick ? { runs: 5, warmup: 1 } : { runs: 30, warmup: 3 });
  const runs = o.runs ?? own.runs;
  const warmup = o.warmup ?? own.warmup;
  const acc: {
    name: string;
    label: string;
    role: Role;
    group: string;
    warmup: Measured[];
    samples: Measured[];
    error?: string;
  }[] = [];
  const notes: string[] = [];
  let error: string | undefined;
  let leftovers: string[];
  try {
    // setup()'s subjects, then each further phase's (Scenario.nextPhase), one after another.
    let subjects: readonly Subject[] | undefined = await s.setup(ctx);
    for (let phase = 1; subjects !== undefined; phase++) {
      const first = acc.length;
      for (const x of subjects) {
        if (x.maxRuns !== undefined && x.maxRuns < runs) {
          notes.push(`${x.name} (${x.label}): ${x.maxRuns} of the ${runs} rounds`);
        }
        acc.push({
          name: x.name,
          label: x.label,
          role: x.role,
          group: x.group ?? '',
          warmup: [],
          samples: [],
        });
      }
      const tag = phase > 1 || s.nextPhase ? ` phase ${phase}` : '';
      for (let round = 0; round < warmup + runs; round++) {
        const warm = round < warmup;
        for (const [i, x] of subjects.entries()) {
          const a = acc[first + i];
          if (!a || a.error !== undefined) continue;
          if (warm ? x.warmup === false : !takesSample(round - warmup, runs, x.maxRuns)) continue;
          ctx.signal.throwIfAborted();
          let m: Measured;
          try {
            const v = await x.sample(ctx.signal);
            m = typeof v === 'number' ? { values: { [metrics[0]?.key ?? 'ms']: v } } : v;
          } catch (e) {
            if (x.role !== 'peer' || ctx.signal.aborted) throw e;
            a.error = message(e);
            notes.push(`${x.name} (${x.label}) dropped after a failure: ${a.error}`);
            ctx.log(`${s.name}: ${x.name} failed, dropped: ${a.error}`);
            continue;
          }
          (warm ? a.warmup : a.samples).push(m);
        }
        const label = warm ? `warm-up ${round + 1}/${warmup}` : `run ${round - warmup + 1}/${runs}`;
        ctx.log(`${s.name}${tag}: ${label}`);
      }
      ctx.signal.throwIfAborted();
      subjects = await s.nextPhase?.(ctx);
    }
  } catch (e) {
    error = ctx.signal.aborted ? 'interrupted' : message(e);
  } finally {
    ctx.log(`${s.name}: teardown`);
    leftovers = await s.teardown(ctx).catch((e: unknown) => [`teardown failed: ${message(e)}`]);
  }
  const statsOf = (samples: Measured[]) =>
    Object.fromEntries(
      metrics.map((m) => [m.key, summarize(samples.map((x) => x.values[m.key] ?? Number.NaN))]),
    );
  const first = metrics[0]?.key ?? 'ms';
  const base = acc.find((a) => a.role === 'baseline');
  const baseMedian = base ? statsOf(base.samples)[first]?.median : undefined;
  const subjects: SubjectResult[] = acc.map((a) => {
    const stats = statsOf(a.samples);
    const median = stats[first]?.median;
    return {
      ...a,
      stats,
      ratio: baseMedian && median !== undefined ? median / baseMedian : undefined,
    };
  });
  const comparisons: Comparison[] = [];
  for (const b of subjects.filter((x) => x.role === 'subject')) {
    for (const p of subjects.filter((x) => x.role === 'peer' && x.group === b.group)) {
      const ratios: Record<string, number> = {};
      for (const m of metrics.filter((x) => x.compare !== false)) {
        ratios[m.key] = (b.stats[m.key]?.median ?? NaN) / (p.stats[m.key]?.median ?? NaN);
      }
      comparisons.push({ group: b.group, subject: b.name, peer: p.name, ratios });
    }
  }
  return {
    name: s.name,
    description: s.description,
    runs,
    warmup,
    metrics,
    subjects,
    comparisons,
    leftovers,
    notes: [...notes, ...(s.notes?.() ?? [])],
    durationMs: performance.now() - t0,
    ...(error === undefined ? {} : { error }),
  };
}
