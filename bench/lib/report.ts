// The terminal table, the JSON file with every sample and the HTML report (html.ts).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { RUNC } from './host.ts';
import { renderHtml, sectionId, type ReportDoc } from './html.ts';
import type { ScenarioResult, SubjectResult } from './runner.ts';

export type { ReportDoc };

const num = (v: number | undefined, digits = 1) =>
  v !== undefined && Number.isFinite(v) ? v.toFixed(digits) : '-';
const ratio = (v: number | undefined) =>
  v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`;

function grid(head: string[], rows: string[][], leftCols: number): string[] {
  const all = [head, ...rows];
  const width = head.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const fmt = (row: string[]) =>
    row
      .map((c, i) => (i < leftCols ? c.padEnd(width[i] ?? 0) : c.padStart(width[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

export function table(r: ScenarioResult): string {
  const base = r.subjects.find((s) => s.role === 'baseline');
  const first = r.metrics[0];
  const single = r.metrics.length === 1 && first !== undefined;
  const rowName = (s: SubjectResult) => (s.role === 'context' ? `(${s.name})` : s.name);
  const lines = [`${r.name}: ${r.description}`];
  let head: string[];
  let rows: string[][];
  if (single) {
    lines.push(
      `${r.runs} runs each after ${r.warmup} warm-up round(s), alternating; ${first.label}`,
    );
    head = ['subject', 'measured', 'median', 'p90', 'min', 'max'];
    rows = r.subjects.map((s) => {
      const st = s.stats[first.key];
      const d = first.digits;
      return [
        rowName(s),
        s.label,
        num(st?.median, d),
        num(st?.p90, d),
        num(st?.min, d),
        num(st?.max, d),
      ];
    });
  } else {
    lines.push(`${r.runs} runs each after ${r.warmup} warm-up round(s), alternating; medians`);
    head = ['subject', 'measured', ...r.metrics.map((m) => m.label)];
    rows = r.subjects.map((s) => [
      rowName(s),
      s.label,
      ...r.metrics.map((m) => num(s.stats[m.key]?.median, m.digits)),
    ]);
  }
  if (base) {
    head.push(`vs ${base.name}`);
    r.subjects.forEach((s, i) => rows[i]?.push(s.role === 'context' ? '' : ratio(s.ratio)));
  }
  lines.push(...grid(head, rows, 2));
  if (r.comparisons.length > 0) {
    lines.push('berth ÷ peer, medians (time, CPU, memory: below 1.00x is better; MB/s: above)');
    const cm = r.metrics.filter((m) => m.compare !== false);
    const crow = r.comparisons.map((c) => [
      `${c.subject} vs ${c.peer}${c.group ? ` (${c.group})` : ''}`,
      ...cm.map((m) => ratio(c.ratios[m.key])),
    ]);
    lines.push(...grid(['', ...cm.map((m) => m.label)], crow, 1).map((l) => `  ${l}`));
  }
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
  const status = (tryRun('git', ['status', '--porcelain'], repo) ?? '')
    .split('\n')
    .filter((l) => l !== '');
  return {
    node: process.version,
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgAtStart: loadavg(),
    runc: tryRun(RUNC, ['--version'])?.split('\n')[0],
    cgroup: existsSync('/sys/fs/cgroup/cgroup.controllers') ? 2 : 1,
    gitCommit: tryRun('git', ['rev-parse', 'HEAD'], repo),
    gitBranch: tryRun('git', ['rev-parse', '--abbrev-ref', 'HEAD'], repo),
    gitSubject: tryRun('git', ['log', '-1', '--format=%s (%ci)'], repo),
    gitDirty: status.length > 0,
    // What the working tree holds beyond the commit (the code measured may not be it).
    gitStatus: status.slice(0, 200),
  };
}

const stampOf = (startedAt: Date) => startedAt.toISOString().replace(/[:.]/g, '-');

export async function writeJson(dir: string, startedAt: Date, doc: ReportDoc): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${stampOf(startedAt)}.json`);
  await writeFile(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}

// Writes <timestamp>.html next to the JSON and reads it back: it must be whole and have a
// section per scenario, with a chart unless the scenario failed before any sample.
export async function writeHtml(dir: string, startedAt: Date, doc: ReportDoc): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${stampOf(startedAt)}.html`);
  await writeFile(file, renderHtml(doc));
  const back = await readFile(file, 'utf8');
  if (!back.trimEnd().endsWith('</html>')) throw new Error(`${file}: report not whole`);
  for (const r of doc.scenarios) {
    const at = back.indexOf(`<section id="${sectionId(r.name)}">`);
    if (at < 0) throw new Error(`${file}: no section for ${r.name}`);
    const sampled = r.subjects.some((x) =>
      x.samples.some((m) => Object.values(m.values).some(Number.isFinite)),
    );
    const end = back.indexOf('</section>', at);
    if (sampled && !back.slice(at, end).includes('<svg')) {
      throw new Error(`${file}: no chart for ${r.name}`);
    }
  }
  return file;
}
