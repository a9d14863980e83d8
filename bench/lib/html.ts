// The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched)
// next to the JSON, with the host and git state at the top and, per scenario, a chart of
// every row's samples for each metric, the stats, berth ÷ peer, the notes and what was left
// behind. It is rendered from the same document as the JSON, so it can be rebuilt from an
// old JSON file (renderHtml(JSON.parse(...)): NaN became null there, and is handled).
import type { ScenarioResult, SubjectResult } from './runner.ts';
import type { Metric } from './types.ts';

// What a run writes: the JSON file, and the HTML report rendered from it.
export interface ReportDoc {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly options: {
    readonly quick: boolean;
    readonly runs: number | undefined;
    readonly warmup: number | undefined;
    readonly peers: readonly string[];
    readonly scenarios: readonly string[];
  };
  readonly host: Record<string, unknown>;
  readonly peers: Record<string, unknown>;
  readonly peersSkipped: Record<string, string>;
  readonly peerLeftovers: readonly string[];
  readonly scenarios: readonly ScenarioResult[];
}

const esc = (s: unknown): string =>
  String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

const num = (v: unknown, digits = 1): string => (finite(v) ? v.toFixed(digits) : '-');

const ratioText = (v: unknown): string => (finite(v) ? `${v.toFixed(2)}x` : '-');

// Row colours by engine; anything else grey.
const COLOURS: Record<string, string> = {
  berth: '#1f6feb',
  docker: '#d9480f',
  podman: '#8250df',
  runc: '#57606a',
};
const colour = (s: SubjectResult): string =>
  s.role === 'context' ? '#8c959f' : (COLOURS[s.name] ?? '#6e7781');

// Round tick steps (1, 2, 5 x 10^k) giving about `count` ticks over [lo, hi].
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

const tickText = (t: number): string => {
  const a = Math.abs(t);
  if (a >= 1e6) return `${(t / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(t / 1e3).toPrecision(3)}k`;
  return String(Number(t.toPrecision(4)));
};

const values = (s: SubjectResult, key: string): number[] =>
  s.samples.map((m) => m.values[key]).filter(finite);

const LABEL_W = 330;
const PLOT_W = 470;
const VALUE_W = 90;
const ROW_H = 22;
const GROUP_HEAD = 20;
const AXIS_H = 22;

// One metric: rows grouped as in the tables, each group on its own scale (groups are
// different workloads: ps of 1 or 1000 containers, a stats call or an idle second). Per
// row: a bar to the median, a whisker from min to max, and a dot per measured sample.
function chart(r: ScenarioResult, m: Metric): string {
  const groups = new Map<string, SubjectResult[]>();
  for (const s of r.subjects) {
    if (values(s, m.key).length === 0) continue;
    groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
  }
  if (groups.size === 0) return '';
  const width = LABEL_W + PLOT_W + VALUE_W;
  const out: string[] = [];
  let y = 8;
  for (const [group, rows] of groups) {
    const all = rows.flatMap((s) => values(s, m.key));
    const lo = Math.min(0, ...all);
    const hiRaw = Math.max(0, ...all);
    const hi = hiRaw > lo ? hiRaw * 1.04 : lo + 1;
    const ticks = niceTicks(lo, hi);
    const x = (v: number) => LABEL_W + ((v - lo) / (hi - lo)) * PLOT_W;
    if (group !== '' || groups.size > 1) {
      out.push(
        `<text x="4" y="${y + 13}" class="group">${esc(group === '' ? '(no group)' : group)}</text>`,
      );
      y += GROUP_HEAD;
    }
    const top = y;
    const bottom = y + rows.length * ROW_H;
    for (const t of ticks) {
      out.push(
        `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${top}" y2="${bottom}" ` +
          `class="${t === 0 ? 'zero' : 'grid'}"/>`,
      );
    }
    for (const s of rows) {
      const v = values(s, m.key);
      const st = s.stats[m.key];
      const cy = y + ROW_H / 2;
      const c = colour(s);
      const name = s.role === 'context' ? `(${s.name})` : s.name;
      // Labels mostly start with the engine's name, which the row name already shows.
      const bare = s.label.startsWith(`${s.name} `) ? s.label.slice(s.name.length + 1) : s.label;
      const label = bare.length > 46 ? `${bare.slice(0, 45)}…` : bare;
      const tip =
        `${s.name}: ${s.label}\nmedian ${num(st?.median, m.digits)}, p90 ${num(st?.p90, m.digits)}, ` +
        `min ${num(st?.min, m.digits)}, max ${num(st?.max, m.digits)}, n ${v.length}`;
      out.push(`<g><title>${esc(tip)}</title>`);
      out.push(
        `<text x="4" y="${cy + 4}" class="row"><tspan class="name" fill="${c}">${esc(name)}</tspan> ` +
          `${esc(label)}</text>`,
      );
      const med = st?.median;
      if (finite(med)) {
        const x0 = Math.min(x(0), x(med));
        out.push(
          `<rect x="${x0.toFixed(1)}" y="${cy - 7}" width="${Math.abs(x(med) - x(0)).toFixed(1)}" ` +
            `height="14" fill="${c}" fill-opacity="0.18"/>`,
        );
      }
      const mn = Math.min(...v);
      const mx = Math.max(...v);
      out.push(
        `<line x1="${x(mn).toFixed(1)}" x2="${x(mx).toFixed(1)}" y1="${cy}" y2="${cy}" stroke="${c}" stroke-width="1.2"/>`,
        `<line x1="${x(mn).toFixed(1)}" x2="${x(mn).toFixed(1)}" y1="${cy - 4}" y2="${cy + 4}" stroke="${c}" stroke-width="1.2"/>`,
        `<line x1="${x(mx).toFixed(1)}" x2="${x(mx).toFixed(1)}" y1="${cy - 4}" y2="${cy + 4}" stroke="${c}" stroke-width="1.2"/>`,
      );
      v.forEach((val, i) => {
        const jitter = ((i * 7) % 5) - 2;
        out.push(
          `<circle cx="${x(val).toFixed(1)}" cy="${(cy + jitter * 1.6).toFixed(1)}" r="2.4" ` +
            `fill="${c}" fill-opacity="0.55"/>`,
        );
      });
      if (finite(med)) {
        out.push(
          `<line x1="${x(med).toFixed(1)}" x2="${x(med).toFixed(1)}" y1="${cy - 8}" y2="${cy + 8}" ` +
            `stroke="${c}" stroke-width="2.5"/>`,
        );
      }
      out.push(
        `<text x="${width - 4}" y="${cy + 4}" class="value">${esc(num(med, m.digits))}</text></g>`,
      );
      y += ROW_H;
    }
    for (const t of ticks) {
      out.push(
        `<text x="${x(t).toFixed(1)}" y="${bottom + 13}" class="tick">${esc(tickText(t))}</text>`,
      );
    }
    y = bottom + AXIS_H;
  }
  const better = m.better === 'lower' ? 'lower is better' : 'higher is better';
  return (
    `<figure><figcaption>${esc(m.label)} <span class="dim">(${better}; bar and thick line: ` +
    `median, whisker: min to max, dots: samples; median on the right)</span></figcaption>` +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" ` +
    `viewBox="0 0 ${width} ${y}" role="img" aria-label="${esc(`${r.name}: ${m.label}`)}">` +
    out.join('') +
    `</svg></figure>`
  );
}

function statsTable(r: ScenarioResult): string {
  const base = r.subjects.find((s) => s.role === 'baseline');
  const first = r.metrics[0];
  const single = r.metrics.length === 1 && first !== undefined;
  const head = single
    ? ['median', 'p90', 'min', 'max']
    : r.metrics.map((m) => `${m.label}<br><span class="dim">median (min–max)</span>`);
  const rows = r.subjects.map((s) => {
    const cells = single
      ? (['median', 'p90', 'min', 'max'] as const).map((k) =>
          num(s.stats[first.key]?.[k], first.digits),
        )
      : r.metrics.map((m) => {
          const st = s.stats[m.key];
          if (!st || !finite(st.median)) return '-';
          return (
            `${num(st.median, m.digits)} <span class="dim">(${num(st.min, m.digits)}–` +
            `${num(st.max, m.digits)})</span>`
          );
        });
    const n = Math.max(0, ...r.metrics.map((m) => s.stats[m.key]?.n ?? 0));
    const vs = base ? [s.role === 'context' ? '' : ratioText(s.ratio)] : [];
    const name = s.role === 'context' ? `(${s.name})` : s.name;
    return (
      `<tr><td><b style="color:${colour(s)}">${esc(name)}</b></td><td>${esc(s.group)}</td>` +
      `<td>${esc(s.label)}${s.error ? ` <span class="bad">dropped: ${esc(s.error)}</span>` : ''}</td>` +
      `${cells.map((c) => `<td class="n">${c}</td>`).join('')}<td class="n">${n}</td>` +
      `${vs.map((c) => `<td class="n">${c}</td>`).join('')}</tr>`
    );
  });
  const unit = single ? ` <span class="dim">(${esc(first.label)})</span>` : '';
  return (
    `<table><thead><tr><th>row</th><th>group</th><th>measured${unit}</th>` +
    `${head.map((h) => `<th class="n">${h}</th>`).join('')}<th class="n">n</th>` +
    `${base ? `<th class="n">vs ${esc(base.name)}</th>` : ''}</tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table>`
  );
}

// berth ÷ peer per metric; green where berth is better, red where worse.
function ratioCell(v: unknown, m: Metric): string {
  if (!finite(v)) return '<td class="n">-</td>';
  const good = m.better === 'lower' ? v < 1 : v > 1;
  const even = Math.abs(v - 1) < 0.05;
  return `<td class="n ${even ? '' : good ? 'good' : 'bad'}">${ratioText(v)}</td>`;
}

function ratioTable(r: ScenarioResult): string {
  if (r.comparisons.length === 0) return '';
  const cm = r.metrics.filter((m) => m.compare !== false);
  const rows = r.comparisons.map(
    (c) =>
      `<tr><td>${esc(`${c.subject} vs ${c.peer}`)}</td><td>${esc(c.group)}</td>` +
      cm.map((m) => ratioCell(c.ratios[m.key], m)).join('') +
      '</tr>',
  );
  return (
    '<p class="caption">berth ÷ peer, medians (time, CPU, memory: below 1.00x is better; ' +
    'MB/s: above)</p>' +
    `<table><thead><tr><th></th><th>group</th>${cm.map((m) => `<th class="n">${esc(m.label)}</th>`).join('')}` +
    `</tr></thead><tbody>${rows.join('')}</tbody></table>`
  );
}

const anchor = (name: string) => `scenario-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;

function section(r: ScenarioResult): string {
  const status = r.error ? `<p class="bad"><b>FAILED:</b> ${esc(r.error)}</p>` : '';
  const dur = finite(r.durationMs) ? `; took ${(r.durationMs / 1000).toFixed(0)} s` : '';
  const left =
    r.leftovers.length === 0
      ? '<p>left behind: nothing</p>'
      : `<p class="bad">left behind:</p><ul>${r.leftovers.map((l) => `<li>${esc(l)}</li>`).join('')}</ul>`;
  const notes =
    r.notes.length === 0
      ? ''
      : `<h3>notes</h3><ul class="notes">${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`;
  return (
    `<section id="${anchor(r.name)}"><h2>${esc(r.name)}</h2><p>${esc(r.description)}</p>` +
    `<p class="dim">${r.runs} runs each after ${r.warmup} warm-up round(s), alternating${dur}</p>` +
    status +
    `<div class="charts">${r.metrics.map((m) => chart(r, m)).join('')}</div>` +
    statsTable(r) +
    ratioTable(r) +
    notes +
    left +
    '</section>'
  );
}

function keyValues(o: Record<string, unknown>): string {
  const rows = Object.entries(o).map(([k, v]) => {
    const text = Array.isArray(v)
      ? v.join(', ')
      : typeof v === 'object' && v !== null
        ? JSON.stringify(v)
        : String(v);
    return `<tr><th>${esc(k)}</th><td>${esc(text)}</td></tr>`;
  });
  return `<table class="kv"><tbody>${rows.join('')}</tbody></table>`;
}

// Every scenario's berth ÷ peer on its first comparable metric, on one screen.
function summary(doc: ReportDoc): string {
  const rows: string[] = [];
  for (const r of doc.scenarios) {
    const m = r.metrics.find((x) => x.compare !== false);
    const status = r.error
      ? '<span class="bad">failed</span>'
      : r.leftovers.length > 0
        ? '<span class="bad">left behind</span>'
        : 'ok';
    const dur = finite(r.durationMs) ? `${(r.durationMs / 1000).toFixed(0)} s` : '';
    const cmp =
      m === undefined || r.comparisons.length === 0
        ? '<td colspan="2" class="dim">no peer rows</td>'
        : `<td>${r.comparisons
            .map((c) => {
              const v = c.ratios[m.key];
              const good = finite(v) && (m.better === 'lower' ? v < 1 : v > 1);
              const cls = !finite(v) || Math.abs(v - 1) < 0.05 ? '' : good ? 'good' : 'bad';
              return `<span class="${cls}">${esc(`vs ${c.peer}${c.group ? ` (${c.group})` : ''}`)} ${ratioText(v)}</span>`;
            })
            .join('<br>')}</td><td>${esc(m.label)}</td>`;
    rows.push(
      `<tr><td><a href="#${anchor(r.name)}">${esc(r.name)}</a></td><td>${status}</td>` +
        `<td class="n">${dur}</td>${cmp}</tr>`,
    );
  }
  return (
    '<table><thead><tr><th>scenario</th><th>status</th><th class="n">took</th>' +
    '<th>berth ÷ peer (medians)</th><th>metric</th></tr></thead>' +
    `<tbody>${rows.join('')}</tbody></table>`
  );
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1120px;padding:0 16px;color:#1f2328}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 4px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:14px;margin:12px 0 4px}
section{margin:28px 0 36px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:170px}
.dim{color:#656d76;font-weight:normal}.bad{color:#cf222e}.good{color:#1a7f37}
figure{margin:10px 0 14px}figcaption{font-weight:600;margin-bottom:2px}
svg text{font:12px system-ui,sans-serif;fill:#1f2328}
svg text.group{font-weight:600;fill:#57606a}
svg text.tick{fill:#656d76;font-size:10px;text-anchor:middle}
svg text.value{text-anchor:end;font-variant-numeric:tabular-nums}
svg tspan.name{font-weight:600}
svg line.grid{stroke:#eaeef2}svg line.zero{stroke:#afb8c1}
ul.notes li{margin:2px 0;color:#424a53}
p.caption{margin:10px 0 0;color:#424a53}
`;

export function renderHtml(doc: ReportDoc): string {
  const started = new Date(doc.startedAt);
  const took = (new Date(doc.finishedAt).getTime() - started.getTime()) / 1000;
  const host = { ...doc.host };
  const gitStatus = host['gitStatus'];
  delete host['gitStatus'];
  const dirtyList =
    Array.isArray(gitStatus) && gitStatus.length > 0
      ? `<details><summary>git status --porcelain (${gitStatus.length} lines)</summary><pre>${esc(gitStatus.join('\n'))}</pre></details>`
      : '';
  const skipped = Object.entries(doc.peersSkipped);
  const peers = Object.entries(doc.peers).map(([n, info]) => {
    const i = info as Record<string, unknown>;
    return `<tr><th>${esc(n)}</th><td>${esc(i['version'] ?? '?')}</td></tr>`;
  });
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>berth bench ${esc(doc.startedAt)}</title>`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<style>${CSS}</style></head><body>`,
    `<h1>berth bench, ${esc(doc.startedAt)}</h1>`,
    `<p class="dim">${doc.options.quick ? '--quick, ' : ''}peers: ${esc(doc.options.peers.join(', ') || 'none')}; ` +
      `scenarios: ${esc(doc.options.scenarios.join(', '))}; ` +
      `${doc.options.runs === undefined ? "runs: each scenario's own" : `runs: ${doc.options.runs}`}; ` +
      `took ${took.toFixed(0)} s (finished ${esc(doc.finishedAt)})</p>`,
    '<h3>host and git state</h3>',
    keyValues(host),
    dirtyList,
    peers.length > 0
      ? `<h3>peers</h3><table class="kv"><tbody>${peers.join('')}</tbody></table>`
      : '',
    skipped.length > 0
      ? `<p class="bad">peers skipped: ${skipped.map(([n, w]) => esc(`${n}: ${w}`)).join('; ')}</p>`
      : '',
    doc.peerLeftovers.length > 0
      ? `<p class="bad">peers left behind: ${doc.peerLeftovers.map(esc).join('; ')}</p>`
      : '',
    '<h3>summary</h3>',
    summary(doc),
    ...doc.scenarios.map(section),
    '</body></html>',
    '',
  ].join('\n');
}

// The section ids a report must contain, one per scenario (main.ts checks the file).
export const sectionId = anchor;
