// The warm-up of a scenario whose notes are computed from every sample it takes (p90s,
// ratios): one untimed sample per row in set-up, instead of the runner's warm-up rounds,
// whose samples those notes would count too. Not with --quick. It also checks that every
// row works before the clock runs.
import type { BenchContext, Subject } from './types.ts';

export async function warmUpEachRow(
  subjects: readonly Subject[],
  ctx: BenchContext,
): Promise<void> {
  if (ctx.quick) return;
  ctx.log('warm-up: one sample per row');
  for (const s of subjects) await s.sample(ctx.signal);
}
