// Waiting on behaviour, not on time: polls a predicate until it holds or the
// deadline passes (then fails with `message`).
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 25, message = 'condition not met' }: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`${message} (waited ${timeoutMs} ms)`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
