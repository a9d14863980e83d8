// The terminal table and the JSON file with every sample.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { RUNC } from './host.ts';
import type { ScenarioResult } from './runner.ts';

const ms = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');

export function table(r: ScenarioResult): string {
  const base = r.subjects.find((s) => s.role === 'baseline');
  const head = [
    'subject',
    'timed command',
    'median',
    'p90',
    'min',
    'max',
    `vs ${base?.name ?? '-'}`,
  ];
  const rows = r.subjects.map((s) => [
    s.role === 'context' ? `(${s.name})` : s.name,
    s.label,
    ms(s.stats.median),
    ms(s.stats.p90),
    ms(s.stats.min),
    ms(s.stats.max),
    s.ratio === undefined || !Number.isFinite(s.ratio) ? '-' : `${s.ratio.toFixed(2)}x`,
  ]);
  const all = [head, ...rows];
  const width = head.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const fmt = (row: string[]) =>
    row.map((c, i) => (i < 2 ? c.padEnd(width[i] ?? 0) : c.padStart(width[i] ?? 0))).join('  ');
  const lines = [
    `${r.name}: ${r.description}`,
    `${r.runs} runs each after ${r.warmup} warm-up round(s), alternating; wall time in ms`,
    fmt(head),
    ...rows.map(fmt),
  ];
  lines.push(
    r.leftovers.length === 0
      ? 'left behind: nothing'
      : `left behind:\n${r.leftovers.map((l) => `  ${l}`).join('\n')}`,
  );
  for (const n of r.notes) lines.push(`note: ${n}`);
  if (r.error) lines.push(`FAILED: ${r.error}`);
  return lines.join('\n');
}

function tryRun(file: string, args: string[], cwd?: string): string | undefined {
  try {
    return execFileSync(file, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      ...(cwd ? { cwd } : {}),
    }).trim();
  } catch {
    return undefined;
  }
}

export function hostInfo(repo: string): Record<string, unknown> {
  return {
    node: process.version,
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgAtStart: loadavg(),
    runc: tryRun(RUNC, ['--version'])?.split('\n')[0],
    cgroup: existsSync('/sys/fs/cgroup/cgroup.controllers') ? 2 : 1,
    gitCommit: tryRun('git', ['rev-parse', 'HEAD'], repo),
    gitDirty: (tryRun('git', ['status', '--porcelain'], repo) ?? '') !== '',
  };
}

export async function writeJson(dir: string, startedAt: Date, doc: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const file = join(dir, `${stamp}.json`);
  await writeFile(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}
