// Runs one scenario: set-up, warm-up rounds, then measured rounds in which every subject
// takes one sample in turn (berth, runc, berth, runc, ...), so drift in machine load hits
// all subjects alike. Teardown always runs.
import { summarize, type Stats } from './stats.ts';
import type { BenchContext, Role, Scenario } from './types.ts';

export interface SubjectResult {
  readonly name: string;
  readonly label: string;
  readonly role: Role;
  readonly warmupMs: number[];
  readonly samplesMs: number[];
  readonly stats: Stats;
  // median / baseline median; undefined when the scenario has no baseline.
  readonly ratio: number | undefined;
}

export interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly runs: number;
  readonly warmup: number;
  readonly subjects: SubjectResult[];
  readonly leftovers: string[];
  readonly notes: string[];
  readonly error?: string;
}

export interface RunOptions {
  readonly runs: number;
  readonly warmup: number;
}

export async function runScenario(
  s: Scenario,
  o: RunOptions,
  ctx: BenchContext,
): Promise<ScenarioResult> {
  const acc: {
    name: string;
    label: string;
    role: Role;
    warmupMs: number[];
    samplesMs: number[];
  }[] = [];
  let error: string | undefined;
  let leftovers: string[];
  try {
    const subjects = await s.setup(ctx);
    for (const x of subjects) {
      acc.push({ name: x.name, label: x.label, role: x.role, warmupMs: [], samplesMs: [] });
    }
    for (let round = 0; round < o.warmup + o.runs; round++) {
      const warm = round < o.warmup;
      for (const [i, x] of subjects.entries()) {
        ctx.signal.throwIfAborted();
        const ms = await x.sample(ctx.signal);
        const a = acc[i];
        if (a) (warm ? a.warmupMs : a.samplesMs).push(ms);
      }
      const label = warm
        ? `warm-up ${round + 1}/${o.warmup}`
        : `run ${round - o.warmup + 1}/${o.runs}`;
      ctx.log(`${s.name}: ${label}`);
    }
  } catch (e) {
    error = ctx.signal.aborted ? 'interrupted' : e instanceof Error ? e.message : String(e);
  } finally {
    ctx.log(`${s.name}: teardown`);
    leftovers = await s.teardown(ctx).catch((e: unknown) => [`teardown failed: ${String(e)}`]);
  }
  const base = acc.find((a) => a.role === 'baseline');
  const baseMedian = base ? summarize(base.samplesMs).median : undefined;
  const subjects = acc.map((a) => {
    const stats = summarize(a.samplesMs);
    return { ...a, stats, ratio: baseMedian ? stats.median / baseMedian : undefined };
  });
  return {
    name: s.name,
    description: s.description,
    runs: o.runs,
    warmup: o.warmup,
    subjects,
    leftovers,
    notes: s.notes?.() ?? [],
    ...(error === undefined ? {} : { error }),
  };
}
