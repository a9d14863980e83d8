// npm run bench -- [--quick] [--runs N] [--warmup N] [SCENARIO...]
// Runs the chosen scenarios (all by default), prints a table per scenario and writes every
// sample to bench/results/<timestamp>.json. ^C stops the current sample and still cleans up.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killRegistered, REPO } from './lib/berthd.ts';
import { hostInfo, table, writeJson } from './lib/report.ts';
import { runScenario, type ScenarioResult } from './lib/runner.ts';
import type { BenchContext, ScenarioFactory } from './lib/types.ts';
import { runRm } from './scenarios/run-rm.ts';

const SCENARIOS: Record<string, ScenarioFactory> = {
  'run-rm': runRm,
};

const USAGE = `usage: npm run bench -- [--quick] [--runs N] [--warmup N] [SCENARIO...]
  --quick     5 runs per subject, 1 warm-up round
  --runs N    measured runs per subject (default 30)
  --warmup N  warm-up rounds, not recorded in the stats (default 3)
scenarios: ${Object.keys(SCENARIOS).join(', ')} (default: all)`;

function positiveInt(v: string | undefined, what: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${what} must be an integer >= ${min}`);
  return n;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = values.quick;
  const runs = positiveInt(values.runs, '--runs', 1) ?? (quick ? 5 : 30);
  const warmup = positiveInt(values.warmup, '--warmup', 0) ?? (quick ? 1 : 3);
  const names = positionals.length > 0 ? positionals : Object.keys(SCENARIOS);
  const unknown = names.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}\n${USAGE}`);
  if (process.getuid?.() !== 0) throw new Error('the bench runs containers: run it as root');

  const abort = new AbortController();
  let firstSignal = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    // A ^C or `timeout` may deliver the signal to the process group as well as to us:
    // repeats within 2 s are one interruption. A later one forces the exit.
    if (firstSignal === 0) {
      firstSignal = Date.now();
      process.stderr.write(`bench: ${sig}, stopping and cleaning up (again to force)\n`);
      abort.abort(new Error(sig));
    } else if (Date.now() - firstSignal > 2000) {
      process.stderr.write(`bench: ${sig} again, exiting before clean-up finished\n`);
      killRegistered();
      process.exit(130);
    }
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  const ctx: BenchContext = {
    quick,
    signal: abort.signal,
    log: (m) => process.stderr.write(`  ${m}\n`),
  };
  const startedAt = new Date();
  const host = hostInfo(REPO);
  const results: ScenarioResult[] = [];
  for (const name of names) {
    const factory = SCENARIOS[name];
    if (!factory || abort.signal.aborted) break;
    const r = await runScenario(factory(), { runs, warmup }, ctx);
    results.push(r);
    process.stdout.write(`\n${table(r)}\n`);
  }
  const file = await writeJson(join(REPO, 'bench', 'results'), startedAt, {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: { quick, runs, warmup, scenarios: names },
    host,
    scenarios: results,
  });
  process.stdout.write(`\nsamples: ${file}\n`);
  if (abort.signal.aborted) return 130;
  return results.some((r) => r.error !== undefined || r.leftovers.length > 0) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  },
);
