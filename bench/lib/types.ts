// The shapes every scenario and subject share. A scenario prepares the subjects it compares
// (berth, bare runc, later docker and podman); the runner alternates their samples.

export type Role = 'subject' | 'baseline' | 'context';

export interface Subject {
  // Short row name: 'berth', 'runc', 'docker', ...
  readonly name: string;
  // What is timed, as a reader would type it.
  readonly label: string;
  // 'baseline' is the denominator of every ratio; 'context' rows help read the others.
  readonly role: Role;
  // One timed sample in milliseconds. Untimed per-sample preparation goes in here too,
  // outside the clock; throwing fails the whole scenario.
  sample(signal: AbortSignal): Promise<number>;
}

export interface BenchContext {
  readonly quick: boolean;
  readonly signal: AbortSignal;
  log(msg: string): void;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  // Starts what the subjects need and returns them, in the order they alternate.
  setup(ctx: BenchContext): Promise<readonly Subject[]>;
  // Stops what setup started and returns what was left behind (empty when clean). Always
  // called, also after a failed or interrupted setup or run; must be idempotent.
  teardown(ctx: BenchContext): Promise<string[]>;
  // Observations made while running (e.g. state still present when a CLI returned).
  notes?(): string[];
}

export type ScenarioFactory = () => Scenario;
