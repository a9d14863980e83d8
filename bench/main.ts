// npm run bench -- [--quick] [--runs N] [--warmup N] [--peers LIST] [SCENARIO...]
// Sets up the chosen peers (docker, podman), runs the chosen scenarios (all by default),
// prints a table per scenario, writes every sample to bench/results/<timestamp>.json and a
// self-contained report with a chart per scenario next to it (<timestamp>.html).
// ^C stops the current sample and still cleans up, peers included.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killRegistered, REPO } from './lib/berthd.ts';
import { benchLock } from './lib/lock.ts';
import { hostInfo, table, writeHtml, writeJson, type ReportDoc } from './lib/report.ts';
import { PEER_NAMES, setupPeers, type PeerName, type PeerSet } from './lib/peers.ts';
import { runScenario, type ScenarioResult } from './lib/runner.ts';
import type { BenchContext, ScenarioFactory } from './lib/types.ts';
import { dockerCliRun } from './scenarios/docker-cli-run.ts';
import { eventsSubscriber } from './scenarios/events-subscriber.ts';
import { logThroughput } from './scenarios/log-throughput.ts';
import { logsRead } from './scenarios/logs-read.ts';
import { monitorMemory } from './scenarios/monitor-memory.ts';
import { networkRun } from './scenarios/network-run.ts';
import { ps } from './scenarios/ps.ts';
import { pull } from './scenarios/pull.ts';
import { readopt } from './scenarios/readopt.ts';
import { restartLatency } from './scenarios/restart-latency.ts';
import { runRm } from './scenarios/run-rm.ts';
import { startStop } from './scenarios/start-stop.ts';
import { statsCost } from './scenarios/stats-cost.ts';

const SCENARIOS: Record<string, ScenarioFactory> = {
  'run-rm': runRm,
  'start-stop': startStop,
  ps,
  'log-throughput': logThroughput,
  'logs-read': logsRead,
  'monitor-memory': monitorMemory,
  'stats-cost': statsCost,
  readopt,
  'events-subscriber': eventsSubscriber,
  'restart-latency': restartLatency,
  'network-run': networkRun,
  pull,
  'docker-cli-run': dockerCliRun,
};

// Scenarios that run the peers' containers on a bridge network: the peers get one
// (peers.ts PeerOptions) only when one of these is chosen.
const PEER_BRIDGE_SCENARIOS: readonly string[] = ['network-run'];

const USAGE = `usage: npm run bench -- [--quick] [--runs N] [--warmup N] [--peers LIST] [SCENARIO...]
  --quick       fewer runs and smaller workloads (run-rm: 5 runs, 1 warm-up round)
  --runs N      measured runs per subject (default: each scenario's own; run-rm 30)
  --warmup N    warm-up rounds, not recorded in the stats (default: each scenario's own)
  --peers LIST  engines to compare berth with: docker,podman or none (default: both,
                installed with apt-get if missing; with --quick: none)
scenarios: ${Object.keys(SCENARIOS).join(', ')} (default: all)`;

function parsePeers(v: string | undefined, quick: boolean): PeerName[] {
  if (v === undefined) return quick ? [] : [...PEER_NAMES];
  if (v === 'none' || v === '') return [];
  const names = v.split(',').map((x) => x.trim());
  const bad = names.filter((n) => !(PEER_NAMES as readonly string[]).includes(n));
  if (bad.length > 0) throw new Error(`unknown peer ${bad.join(', ')} (docker, podman, none)`);
  return [...new Set(names)] as PeerName[];
}

function positiveInt(v: string | undefined, what: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${what} must be an integer >= ${min}`);
  return n;
}

// Released at the end of the run, and on a forced exit.
let releaseLock = () => {};

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      peers: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = values.quick;
  const runs = positiveInt(values.runs, '--runs', 1);
  const warmup = positiveInt(values.warmup, '--warmup', 0);
  const peerNames = parsePeers(values.peers, quick);
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
      releaseLock();
      process.exit(130);
    }
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  const log = (m: string) => process.stderr.write(`  ${m}\n`);
  releaseLock = await benchLock(abort.signal, log);
  try {
    return await measure(names, peerNames, { quick, runs, warmup }, abort, log);
  } finally {
    releaseLock();
  }
}

// The run itself, with the lock held.
async function measure(
  names: readonly string[],
  peerNames: readonly PeerName[],
  o: { quick: boolean; runs: number | undefined; warmup: number | undefined },
  abort: AbortController,
  log: (m: string) => void,
): Promise<number> {
  const { quick, runs, warmup } = o;
  const startedAt = new Date();
  const host = hostInfo(REPO);
  const results: ScenarioResult[] = [];
  let peerSet: PeerSet | undefined;
  let peerLeftovers: string[] = [];
  const skipped: Record<string, string> = {};
  let peerInfo: Record<string, unknown> = {};
  try {
    if (peerNames.length > 0) {
      peerSet = await setupPeers(peerNames, abort.signal, log, {
        bridge: names.some((n) => PEER_BRIDGE_SCENARIOS.includes(n)),
      });
      for (const [n, why] of peerSet.skipped) {
        skipped[n] = why;
        process.stderr.write(`bench: peer ${n} skipped: ${why}\n`);
      }
      peerInfo = Object.fromEntries(peerSet.peers.map((p) => [p.name, p.info()]));
    }
    const ctx: BenchContext = { quick, signal: abort.signal, peers: peerSet?.peers ?? [], log };
    for (const name of names) {
      const factory = SCENARIOS[name];
      if (!factory || abort.signal.aborted) break;
      const r = await runScenario(factory(), { runs, warmup }, ctx);
      results.push(r);
      process.stdout.write(`\n${table(r)}\n`);
    }
  } finally {
    if (peerSet) {
      log('stopping peers');
      peerLeftovers = await peerSet.stop();
      if (peerLeftovers.length > 0) {
        process.stdout.write(
          `\npeers left behind:\n${peerLeftovers.map((l) => `  ${l}`).join('\n')}\n`,
        );
      }
    }
  }
  const resultsDir = join(REPO, 'bench', 'results');
  const doc: ReportDoc = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: { quick, runs, warmup, peers: peerNames, scenarios: names },
    host,
    peers: peerInfo,
    peersSkipped: skipped,
    peerLeftovers,
    scenarios: results,
  };
  const file = await writeJson(resultsDir, startedAt, doc);
  process.stdout.write(`\nsamples: ${file}\n`);
  // Read back and checked (a section and a chart per scenario): a report that cannot be
  // written fails the run, --quick in CI included.
  let report: string | undefined;
  try {
    report = await writeHtml(resultsDir, startedAt, doc);
    process.stdout.write(`report: ${report}\n`);
  } catch (e) {
    process.stderr.write(`bench: HTML report: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  const took = (Date.parse(doc.finishedAt) - startedAt.getTime()) / 1000;
  process.stdout.write(`total: ${took.toFixed(0)} s\n`);
  if (abort.signal.aborted) return 130;
  const bad = results.some((r) => r.error !== undefined || r.leftovers.length > 0);
  return bad || peerLeftovers.length > 0 || report === undefined ? 1 : 0;
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
