// Many calls of one task, a few at a time (create + rm pairs, container starts).

// Calls task `count` times, at most `width` at once. After a failure no new call starts,
// and the calls under way finish before the failure is thrown, so that whatever they made
// is there for teardown to find.
export async function repeatConcurrently(
  count: number,
  width: number,
  task: () => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < count && !failed) {
      next++;
      try {
        await task();
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const done = await Promise.allSettled(Array.from({ length: width }, worker));
  for (const d of done) if (d.status === 'rejected') throw d.reason;
}
