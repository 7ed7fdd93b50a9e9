// The status page in a real headless Chromium (playwright-core driving
// /usr/bin/chromium) against a real site: daemon, simulator, SQLite, admin API.
//
// Needs `playwright-core` (dev dependency) and Debian's `chromium` package. When
// either is missing the suite is skipped with the reason in its name, so the
// rest of the tests still run on a machine without a browser.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { startSite, type Site } from './helpers/site.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'page-test-token-0c9d';

// Minimal types of the playwright-core API used here (the package may be absent).
interface Locator {
  count(): Promise<number>;
  first(): Locator;
  textContent(): Promise<string | null>;
  getAttribute(name: string): Promise<string | null>;
  waitFor(o?: { state?: string; timeout?: number }): Promise<void>;
  allTextContents(): Promise<string[]>;
}
interface Page {
  goto(url: string): Promise<unknown>;
  url(): string;
  locator(selector: string): Locator;
  waitForFunction<A>(fn: (arg: A) => unknown, arg?: A, o?: { timeout?: number }): Promise<unknown>;
  evaluate<T, A = undefined>(fn: (arg: A) => T, arg?: A): Promise<T>;
  on(event: 'console', fn: (m: { type(): string; text(): string }) => void): void;
  on(event: 'pageerror', fn: (e: Error) => void): void;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<unknown>;
}
interface BrowserContext {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
interface Playwright {
  chromium: { launchPersistentContext(dir: string, o: Record<string, unknown>): Promise<BrowserContext> };
}

async function loadPlaywright(): Promise<{ pw: Playwright | null; reason: string | null }> {
  const name = 'playwright-core'; // a variable: the type checker must not require the package
  let pw: Playwright | null = null;
  try {
    pw = (await import(name)) as Playwright;
  } catch {
    return { pw: null, reason: 'playwright-core is not installed (npm install -D playwright-core)' };
  }
  if (!existsSync(CHROMIUM)) return { pw: null, reason: `${CHROMIUM} is missing (apt-get install -y chromium)` };
  return { pw, reason: null };
}

const { pw, reason } = await loadPlaywright();
// say why in the run's output: a skipped suite is easy to overlook
if (reason) process.stderr.write(`test/admin-page.test.ts SKIPPED: ${reason}\n`);

// The predicates below run inside the page: Playwright sends their source (the
// page's CSP forbids eval, so string predicates would not work). The type
// checker has no DOM library here, hence `globalThis as any`.

describe.skipIf(reason !== null)(`status page in headless Chromium${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let site: Site;
  let admin: AdminServer;
  let context: BrowserContext;
  let profile: string;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    site = await startSite({ terminals: 3, daemon: { heartbeatSec: 1 }, sim: { control: 0 } });
    admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: pino({ level: 'silent' }) });
    profile = mkdtempSync(join(tmpdir(), 'termsync-chromium-'));
    context = await pw!.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await admin?.close();
    await site?.close();
  });

  it('opens with ?token=, drops the token from the address, and shows the terminals online', async () => {
    await page.goto(`http://127.0.0.1:${admin.port}/?token=${TOKEN}`);
    expect(page.url()).toBe(`http://127.0.0.1:${admin.port}/`);
    await page.waitForFunction(
      () => (globalThis as any).document.querySelectorAll('#terminals tr[data-state="online"]').length === 3 && (globalThis as any).document.querySelector('#c-online').textContent === '3',
      undefined,
      { timeout: 10_000 },
    );
    const ids = await page.locator('#terminals tr td:first-child').allTextContents();
    expect(ids).toEqual(['t1', 't2', 't3']);
    // each terminal's protocol, beside its address
    expect(await page.locator('#terminals tr td:nth-child(4)').allTextContents()).toEqual(['termsync', 'termsync', 'termsync']);
    expect(await page.locator('#syncMode').textContent()).toBe('all');
    // the recent log is there from the start (terminals coming online)
    await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('#log tr')].some((tr: any) => tr.textContent.includes('Terminal online')), undefined, { timeout: 5000 });
  });

  it('a new enrollment on a terminal appears in the live log without a reload', async () => {
    await page.evaluate(() => ((globalThis as any).__notReloaded = true));
    const enroll = await fetch(`http://127.0.0.1:${site.sim.controlPort}/terminals/2/users`, {
      method: 'POST',
      body: JSON.stringify({ id: '9001', name: 'Walk-in Visitor', cards: [{ type: 1, data: '9001' }] }),
    });
    expect(enroll.status).toBe(201);
    await page.waitForFunction(
      () =>
        [...(globalThis as any).document.querySelectorAll('#log tr[data-type="USER_UPDATE_SUCCESS_DEVICE"]')].some(
          (tr: any) => tr.textContent.includes('9001') && tr.textContent.includes('User update succeeded (Device)') && tr.textContent.includes('t2'),
        ),
      undefined,
      { timeout: 10_000 },
    );
    // the pushes to the other terminals follow, newest on top
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#log tr[data-type="USER_UPDATE_SUCCESS_SERVER"]').length >= 2, undefined, { timeout: 10_000 });
    const rowIds = (await page.evaluate(() => [...(globalThis as any).document.querySelectorAll('#log tr')].map((tr: any) => tr.dataset.id as string))).map(Number);
    expect(rowIds).toEqual([...rowIds].sort((a, b) => b - a));
    expect(await page.locator('#log tr').first().textContent()).toContain('User update succeeded (Server)');
    expect(await page.evaluate(() => (globalThis as any).__notReloaded === true)).toBe(true);
    expect(await page.locator('#livetext').textContent()).toBe('live');
  });

  it('shows a terminal that drops off as offline on the next refresh', async () => {
    const control = `http://127.0.0.1:${site.sim.controlPort}/terminals/3/faults`;
    await fetch(control, { method: 'POST', body: JSON.stringify({ type: 'refuse', ms: 60_000 }) });
    await fetch(control, { method: 'POST', body: JSON.stringify({ type: 'drop' }) });
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#terminals tr[data-terminal="t3"]')?.dataset.state === 'offline', undefined, { timeout: 10_000 });
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#c-offline').textContent === '1', undefined, { timeout: 10_000 });
    await page.waitForFunction(
      () => [...(globalThis as any).document.querySelectorAll('#log tr')].some((tr: any) => tr.textContent.includes('Terminal offline') && tr.textContent.includes('t3')),
      undefined,
      { timeout: 5000 },
    );
    if (process.env.ADMIN_PAGE_SCREENSHOT) await page.screenshot({ path: process.env.ADMIN_PAGE_SCREENSHOT, fullPage: true });
    // no script errors and no Content-Security-Policy violations on the way
    expect(problems).toEqual([]);
  });
});
