// The shapes every scenario and subject share. A scenario prepares the subjects it compares
// (berth, bare runc, docker, podman); the runner alternates their samples.
import type { Engine } from './engines.ts';

// 'subject' is berth; 'peer' rows (docker, podman) are compared with the berth row of the
// same group; 'baseline' is the denominator of the `vs` column; 'context' rows help read
// the others.
export type Role = 'subject' | 'baseline' | 'context' | 'peer';

export interface Metric {
  // Key in each sample's values.
  readonly key: string;
  // Column header, with its unit: 'wall ms', 'MB/s'.
  readonly label: string;
  readonly better: 'lower' | 'higher';
  // Decimals shown (default 1).
  readonly digits?: number;
  // Whether berth ÷ peer means something (not for differences, which may be negative or 0).
  readonly compare?: boolean;
}

// One sample: a value per metric (NaN when it does not apply to the subject), and anything
// worth keeping in the JSON.
export interface Measured {
  readonly values: Readonly<Record<string, number>>;
  readonly detail?: unknown;
}

export interface Subject {
  // Short row name: 'berth', 'runc', 'docker', ...
  readonly name: string;
  // What is measured, as a reader would type it.
  readonly label: string;
  readonly role: Role;
  // Rows of a group are compared with each other (berth vs each peer); default ''.
  readonly group?: string;
  // One sample: a wall time in ms, or a value per metric. Untimed per-sample preparation
  // goes in here too, outside the clock; throwing fails the whole scenario, except for a
  // peer, which is then dropped from the scenario.
  sample(signal: AbortSignal): Promise<number | Measured>;
  // At most this many measured samples (default: one per round), for a subject whose
  // samples are slow: taken in rounds spread evenly over the run. Warm-up rounds as usual.
  readonly maxRuns?: number;
  // false: no samples in warm-up rounds (default true).
  readonly warmup?: boolean;
}

export interface BenchContext {
  readonly quick: boolean;
  readonly signal: AbortSignal;
  // docker and podman, when selected and set up; empty otherwise.
  readonly peers: readonly Engine[];
  log(msg: string): void;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  // The first is the one the `vs` column and the order statistics are about. Default: one
  // metric, the wall time in ms, which is what a plain number from sample() means.
  readonly metrics?: readonly Metric[];
  // Runs and warm-up rounds when the command line does not say (default 30 and 3, --quick
  // 5 and 1).
  schedule?(quick: boolean): { runs: number; warmup: number };
  // Starts what the subjects need and returns them, in the order they alternate.
  setup(ctx: BenchContext): Promise<readonly Subject[]>;
  // Rows that need the engines in another state than the rows before (ps with 1, then 100,
  // then 1000 containers): called after the warm-up and measured rounds of setup()'s
  // subjects, and after each phase's, until it returns undefined. It changes the state and
  // returns the next phase's subjects, which get warm-up and measured rounds of their own
  // (their groups tell the phases apart in the tables).
  nextPhase?(ctx: BenchContext): Promise<readonly Subject[] | undefined>;
  // Stops what setup started and returns what was left behind (empty when clean). Always
  // called, also after a failed or interrupted setup or run; must be idempotent.
  teardown(ctx: BenchContext): Promise<string[]>;
  // Observations made while running (e.g. state still present when a CLI returned).
  notes?(): string[];
}

export type ScenarioFactory = () => Scenario;

export const WALL_MS: Metric = { key: 'ms', label: 'wall ms', better: 'lower' };
