// Output on stdout: Docker-like aligned tables, --format templates and `--format json`.
import { parseTemplate, TemplateError } from './template.ts';
import { BerthError } from '../util/errors.ts';

// text/tabwriter with docker's padding of 3 spaces.
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function formatItems(
  items: readonly unknown[],
  format: string,
  defaultTable: () => string,
): string {
  if (!format || format === 'table') return defaultTable();
  if (format === 'json') return items.map((i) => JSON.stringify(i) + '\n').join('');
  try {
    const t = parseTemplate(format);
    if (t.table) {
      const rows = [t.header(), ...items.map((i) => t.render(i))].map((l) => l.split('\t'));
      return table(rows);
    }
    return items.map((i) => t.render(i) + '\n').join('');
  } catch (e) {
    if (e instanceof TemplateError)
      throw new BerthError('INVALID_ARGUMENT', `Invalid format: ${e.message}`, { field: 'format' });
    throw e;
  }
}

export function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
