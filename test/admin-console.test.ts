// The operator console (src/admin/console/) in a real headless Chromium
// (playwright-core driving /usr/bin/chromium) against a real daemon, the real
// simulator and a real SQLite file: each flow an operator uses, by keyboard
// and mouse, with screenshots of each page saved to test-output/console/
// (git-ignored) at 1366x768 and at phone size.
//
// Skipped with the reason in its name when playwright-core or chromium is missing.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type AdminServer } from '../src/admin/server.js';
import { DEV_COMM_KEY } from '../src/sim/devkey.js';
import { Simulator } from '../src/sim/simulator.js';
import { ZERO_TIMING } from '../src/sim/timing.js';
import { startSite, type Site } from './helpers/site.js';
import { waitFor } from './helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'console-test-token-4be1';
const SHOTS = join(import.meta.dirname, '..', 'test-output', 'console');

async function loadPlaywright(): Promise<{ pw: any; reason: string | null }> {
  const name = 'playwright-core'; // a variable: the type checker must not require the package
  let pw: any = null;
  try {
    pw = await import(name);
  } catch {
    return { pw: null, reason: 'playwright-core is not installed (npm install -D playwright-core)' };
  }
  if (!existsSync(CHROMIUM)) return { pw: null, reason: `${CHROMIUM} is missing (apt-get install -y chromium)` };
  return { pw, reason: null };
}

const { pw, reason } = await loadPlaywright();
if (reason) process.stderr.write(`test/admin-console.test.ts SKIPPED: ${reason}\n`);

// Predicates run inside the page (the console's CSP forbids eval, so they are
// functions, not strings); the type checker has no DOM library here.

describe.skipIf(reason !== null)(`operator console in headless Chromium${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
  let site: Site;
  let admin: AdminServer;
  let context: any;
  let profile: string;
  let page: any;
  let base: string;
  const problems: string[] = [];
  const dialogs: string[] = [];

  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined || method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  const shot = async (name: string) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  const go = async (hash: string) => {
    await page.evaluate((h: string) => ((globalThis as any).location.hash = h), hash);
  };

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    site = await startSite({ terminals: 3, daemon: { heartbeatSec: 2, listen: [{ host: '127.0.0.1', port: 0 }] }, sim: { control: 0 } });
    admin = await startAdmin({ daemon: site.daemon, host: '127.0.0.1', port: 0, token: Buffer.from(TOKEN), log: pino({ level: 'silent' }), streamPollMs: 100 });
    base = `http://127.0.0.1:${admin.port}`;
    profile = mkdtempSync(join(tmpdir(), 'termsync-console-chromium-'));
    context = await pw.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1366, height: 768 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await context.newPage();
    page.on('console', (m: any) => {
      if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404)/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e: Error) => problems.push(e.message));
    page.on('dialog', (d: any) => {
      dialogs.push(d.message());
      void d.accept();
    });
  }, 90_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await admin?.close();
    await site?.close();
  });

  it('asks for the token with a form, keeps it in sessionStorage only, never in the address', async () => {
    await page.goto(`${base}/console/`);
    await page.locator('#login').waitFor({ state: 'visible', timeout: 10_000 });
    await shot('login');
    // keyboard only: the token field has focus
    await page.keyboard.type('wrong-token');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#login-error').textContent.includes('not the admin token'), undefined, { timeout: 5000 });
    await page.fill('#token', TOKEN);
    await page.keyboard.press('Enter');
    await page.locator('#nav').waitFor({ state: 'visible', timeout: 5000 });
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('termsync.adminToken'))).toBe(TOKEN);
    expect(await page.evaluate(() => (globalThis as any).localStorage.length)).toBe(0);
    expect(await page.evaluate(() => (globalThis as any).document.cookie)).toBe('');
    // the files came with a strict CSP
    const r = await fetch(`${base}/console/`);
    expect(r.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
  });

  it('Users: search by name and ID, paged; hostile and right-to-left names shown as text', async () => {
    const names = ['<img src=x onerror="globalThis.__xss=1">', '<script>globalThis.__xss=2</script>', 'שלום עולם', 'مرحبا 🦊 Fox', 'Zoë 😀'];
    for (const [i, name] of names.entries()) expect((await api('PUT', `/api/users/x${i}`, { name })).status).toBe(201);
    for (let i = 0; i < 57; i++) expect((await api('PUT', `/api/users/p${String(i).padStart(2, '0')}`, { name: `Paged Person ${String(i).padStart(2, '0')}` })).status).toBe(201);
    await go('#/users?by=name&q=<');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#users-table tbody tr').length === 2, undefined, { timeout: 5000 });
    const shown = await page.locator('#users-table tbody td:nth-child(2)').allTextContents();
    expect(shown.sort()).toEqual([names[0], names[1]].sort());
    expect(await page.evaluate(() => (globalThis as any).__xss)).toBeUndefined();
    expect(await page.locator('#users-table img').count()).toBe(0);
    // the search form by keyboard: RTL text, then by ID
    await page.fill('#user-q', 'שלום');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#users-table tbody tr')?.dataset.user === 'x2', undefined, { timeout: 5000 });
    await page.fill('#user-q', 'مرحبا');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#users-table tbody td:nth-child(2)')?.textContent === 'مرحبا 🦊 Fox', undefined, { timeout: 5000 });
    await page.selectOption('#user-by', 'id');
    await page.fill('#user-q', 'x4');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#users-table tbody td:nth-child(2)')?.textContent === 'Zoë 😀', undefined, { timeout: 5000 });
    // 57 of a name: pages of 50
    await go('#/users?by=name&q=paged');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#users-table tbody tr').length === 50, undefined, { timeout: 5000 });
    await shot('users');
    await page.getByRole('button', { name: 'Next →' }).click();
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#users-table tbody tr').length === 7, undefined, { timeout: 5000 });
    expect(await page.locator('#users-table tbody tr').first().getAttribute('data-user')).toBe('p50');
    await page.getByRole('button', { name: '← Previous' }).click();
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#users-table tbody tr')?.dataset.user === 'p00', undefined, { timeout: 5000 });
  });

  it('user detail: every field, sync state on each terminal, set PIN (write-only), delete', async () => {
    const u = { name: 'Ada Lovelace', cards: [{ type: 1, data: 'ada00001' }], accessGroups: [2], phrase: 'hello', startTime: 0, endTime: 0 };
    expect((await api('PUT', '/api/users/ada', u)).status).toBe(201);
    await site.waitConverged({ users: ['ada'] });
    await go('#/user/ada');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#sync-table tbody tr[data-state="current"]').length === 3, undefined, { timeout: 10_000 });
    const json = (await api('GET', '/api/users/ada')).body;
    const fields = await page.evaluate(() => [...(globalThis as any).document.querySelectorAll('#user-fields dt')].map((e: any) => e.textContent));
    expect(fields).toEqual(Object.keys(json));
    expect(await page.locator('#user-fields dd[data-field="name"]').textContent()).toBe('Ada Lovelace');
    await shot('user');
    // PIN: typed, sent, never shown back
    await page.fill('#pin', '4321');
    await page.locator('#pin-form button[type=submit]').click();
    await waitFor(async () => (await api('GET', '/api/users/ada')).body.pinSet === true, { message: 'PIN not set' });
    expect(await page.locator('#pin').inputValue()).toBe('');
    expect(await page.content()).not.toContain('4321');
    // a terminal in 'specific' mode without the user's group: out of scope, and why
    await api('PUT', '/api/settings', { syncMode: 'specific' });
    await api('PUT', '/api/terminals/t3/groups', { accessGroups: [9] });
    await api('PUT', '/api/terminals/t1/groups', { accessGroups: [2] });
    await api('PUT', '/api/terminals/t2/groups', { accessGroups: [2] });
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#sync-table tr[data-terminal="t3"]')?.dataset.state === 'out-of-scope', undefined, { timeout: 5000 });
    expect(await page.locator('#sync-table tr[data-terminal="t3"]').textContent()).toMatch(/access groups \[9\].*\[2\]/);
    await api('PUT', '/api/settings', { syncMode: 'all' });
    // a new user from the form
    await go('#/users');
    await page.locator('#new-user').click();
    await page.fill('#u-id', 'made-here');
    await page.fill('#u-name', 'Made in the console ✓');
    await page.fill('#u-cards', '1 abcd0101\n2 abcd0102');
    await page.fill('#u-groups', '2');
    await page.locator('#u-save').click();
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#user-fields dd[data-field="name"]')?.textContent === 'Made in the console ✓', undefined, { timeout: 5000 });
    expect((await api('GET', '/api/users/made-here')).body).toMatchObject({ cards: [{ type: 1, data: 'abcd0101' }, { type: 2, data: 'abcd0102' }], accessGroups: [2] });
    await site.waitConverged({ users: ['made-here'] });
    // delete (confirmed)
    expect((await api('PUT', '/api/users/gone', { name: 'To delete' })).status).toBe(201);
    await go('#/user/gone');
    await page.locator('#delete-user').click();
    await waitFor(async () => (await api('GET', '/api/users/gone')).status === 404, { message: 'user not deleted' });
    expect(dialogs.some((d) => d.includes('Delete user gone'))).toBe(true);
  });

  it('a refused push (duplicate card) shows its reason, and editing the user fixes it', async () => {
    expect((await api('PUT', '/api/users/holder', { name: 'Card holder', cards: [{ type: 1, data: 'dd01' }] })).status).toBe(201);
    await site.waitConverged({ users: ['holder'] });
    expect((await api('PUT', '/api/users/dup', { name: 'Duplicate card', cards: [{ type: 1, data: 'dd01' }] })).status).toBe(201);
    await go('#/user/dup');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#sync-table tr[data-state="refused"]').length === 3, undefined, { timeout: 10_000 });
    const row = await page.locator('#sync-table tr[data-terminal="t1"]').textContent();
    expect(row).toMatch(/refused/);
    expect(row).toMatch(/DUPLICATE_CARD: a card of this user is held by user holder/);
    expect(await page.locator('#sync-table tr[data-terminal="t1"] a[data-user="holder"]').count()).toBe(1);
    await shot('user-refused');
    // the failures page lists it too, with a retry
    await go('#/failures');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#push-failures tr[data-user="dup"]').length === 3, undefined, { timeout: 5000 });
    // no device user failed to be read on this site: the pull failures list is empty
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#pull-failures')?.textContent === 'None.', undefined, { timeout: 5000 });
    await shot('failures');
    // retry as is: sent again, refused again (a newer refusal)
    const first = (await api('GET', '/api/push-failures?user=dup&terminal=t1')).body[0].time;
    await new Promise((r) => setTimeout(r, 5));
    await page.locator('#push-failures tr[data-terminal="t1"][data-user="dup"] button').click();
    await waitFor(async () => (await api('GET', '/api/push-failures?user=dup&terminal=t1')).body[0]?.time > first, { message: 'retry did not send the user again' });
    // edit: give the user a card of its own
    await go('#/user/dup');
    await page.locator('#edit-user').click();
    await page.locator('#u-cards').waitFor();
    expect(await page.locator('#u-cards').inputValue()).toBe('1 dd01');
    await page.fill('#u-cards', '1 dd02');
    await shot('user-edit');
    await page.locator('#u-save').click();
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#sync-table tr[data-state="current"]').length === 3, undefined, { timeout: 10_000 });
    await site.waitConverged({ users: ['dup', 'holder'] });
    expect((await api('GET', '/api/push-failures?user=dup')).body).toEqual([]);
  });

  it('Terminals: a pending terminal approved from the page; resync with progress; access groups', async () => {
    const dialer = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 8000, dial: { host: '127.0.0.1', port: site.daemon.listenPorts[0] } });
    try {
      await go('#/terminals');
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#terminals-table tr[data-terminal="8001"]')?.dataset.state === 'pending', undefined, { timeout: 10_000 });
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#terminals-table tr[data-state="online"]').length === 3, undefined, { timeout: 10_000 });
      await shot('terminals');
      await page.locator('#terminals-table tr[data-terminal="8001"] button[data-action="approve"]').click();
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#terminals-table tr[data-terminal="8001"]')?.dataset.state === 'online', undefined, { timeout: 10_000 });
      expect(site.daemon.terminals().find((t) => t.id === '8001')?.approved).toBe(true);
      // it receives the server's users
      await site.waitConverged({ ids: ['t1'], users: ['ada'] });
      await waitFor(() => dialer.terminals[0].getUser('ada') !== null && dialer.terminals[0].getUser('ada') !== undefined, { message: 'approved terminal not synced' });
      // resync with progress
      await page.locator('#terminals-table a[data-terminal="t2"]').click();
      await page.waitForFunction(() => !(globalThis as any).document.querySelector('#resync')?.disabled, undefined, { timeout: 5000 });
      await page.locator('#resync').click();
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#resync-progress').textContent.includes('Resync finished'), undefined, { timeout: 15_000 });
      // users held, as counted by that resync
      const held = String(site.sim.terminal(2)!.userCount ?? '');
      await page.waitForFunction((n: string) => (globalThis as any).document.querySelector('#terminals-table tr[data-terminal="t2"] td:nth-child(7)')?.textContent === n, held, { timeout: 5000 });
      await shot('terminal');
      // access groups from the form
      await page.fill('#groups', '4, 5');
      await page.locator('#groups-form button').click();
      await waitFor(() => JSON.stringify(site.daemon.terminals().find((t) => t.id === 't2')?.accessGroups) === '[4,5]', { message: 'groups not saved' });
    } finally {
      await api('DELETE', '/api/terminals/8001');
      await dialer.close();
    }
  }, 60_000);

  it('Terminals: add one the server dials from the form, then remove it', async () => {
    const extra = await Simulator.start({ terminals: 1, commKey: DEV_COMM_KEY, timing: ZERO_TIMING, deviceIdBase: 9000 });
    try {
      await go('#/terminals');
      await page.fill('#t-id', 'door-9');
      await page.fill('#t-host', '127.0.0.1');
      await page.fill('#t-port', String(extra.ports()[0]));
      await page.fill('#t-groups', '2');
      await page.locator('#add-terminal button[type=submit]').click();
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#terminals-table tr[data-terminal="door-9"]')?.dataset.state === 'online', undefined, { timeout: 10_000 });
      expect(site.daemon.terminals().find((t) => t.id === 'door-9')?.accessGroups).toEqual([2]);
      await page.locator('#terminals-table a[data-terminal="door-9"]').click();
      await page.locator('#remove-terminal').click();
      await waitFor(() => !site.daemon.terminals().some((t) => t.id === 'door-9'), { message: 'terminal not removed' });
      expect(dialogs.some((d) => d.startsWith('Remove terminal door-9?'))).toBe(true);
      await page.waitForFunction(() => (globalThis as any).location.hash === '#/terminals', undefined, { timeout: 5000 });
      await waitFor(() => !extra.terminals[0].connected, { message: 'the removed terminal kept its session' });
    } finally {
      await extra.close();
    }
  }, 30_000);

  it('Sync settings: the four modes by their BioStar 2 names; a change is confirmed and logged', async () => {
    await go('#/settings');
    await page.locator('#settings-form').waitFor();
    const labels = await page.locator('.mode label').allTextContents();
    expect(labels).toEqual(['Disabled', 'All Devices', 'All Devices (including user update from device)', 'Specific Devices (only devices belonging to the access group)']);
    expect(await page.locator('#mode-all').isChecked()).toBe(true);
    await shot('settings');
    await page.locator('#mode-server').check();
    await page.locator('#save-mode').click();
    await waitFor(() => site.daemon.engine.syncMode === 'server', { message: 'mode not changed' });
    expect(dialogs.some((d) => d.includes('"All Devices (including user update from device)" to "All Devices"'))).toBe(true);
    const logged = (await api('GET', '/api/events?type=SYNC_MODE_CHANGED&order=desc&limit=1')).body;
    expect(logged[0].detail).toEqual({ from: 'all', to: 'server' });
    await api('PUT', '/api/settings', { syncMode: 'all' });
  });

  it('Monitoring log: live, filtered by terminal, linking to the user page', async () => {
    await go('#/log?terminal=t2');
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#live-text')?.textContent === 'live', undefined, { timeout: 10_000 });
    const enroll = await fetch(`http://127.0.0.1:${site.sim.controlPort}/terminals/2/users`, {
      method: 'POST',
      body: JSON.stringify({ id: '9001', name: 'Walk-in <b>Visitor</b>', cards: [{ type: 1, data: '9001' }] }),
    });
    expect(enroll.status).toBe(201);
    await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('#log tr[data-type="USER_UPDATE_SUCCESS_DEVICE"]')].some((tr: any) => tr.textContent.includes('9001')), undefined, { timeout: 10_000 });
    // pushes to t1 and t3 are filtered out; t2's own events only
    await new Promise((r) => setTimeout(r, 500));
    const terminals = await page.evaluate(() => [...(globalThis as any).document.querySelectorAll('#log tr td:nth-child(3)')].map((td: any) => td.textContent));
    expect(terminals.every((t: string) => t === 't2' || t === '')).toBe(true);
    await shot('log');
    await page.locator('#log a[data-user="9001"]').first().click();
    await page.waitForFunction(() => (globalThis as any).document.querySelector('#user-fields dd[data-field="name"]')?.textContent === 'Walk-in <b>Visitor</b>', undefined, { timeout: 5000 });
  });

  it('a device user the server could not read is listed as a pull failure, and Retry brings it in', async () => {
    // terminal 3 answers GET_USERS for this user with a record format the server does not know
    site.sim.terminal(3)!.unreadable(60_000, '9100');
    const enroll = await fetch(`http://127.0.0.1:${site.sim.controlPort}/terminals/3/users`, {
      method: 'POST',
      body: JSON.stringify({ id: '9100', name: 'Unreadable at first', cards: [{ type: 1, data: '9100' }] }),
    });
    expect(enroll.status).toBe(201);
    await waitFor(async () => (await api('GET', '/api/pull-failures?user=9100')).body.length === 1, { message: 'no pull failure recorded' });
    await go('#/failures');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#pull-failures tr[data-user="9100"]').length === 1, undefined, { timeout: 10_000 });
    expect(await page.locator('#pull-failures tr[data-user="9100"]').textContent()).toMatch(/t3/);
    expect((await api('GET', '/api/users/9100')).status).toBe(404);
    await shot('pull-failure');
    // the terminal reads its record normally again: Retry pulls it now
    site.sim.terminal(3)!.unreadable(0, '9100');
    await page.locator('#pull-failures tr[data-user="9100"] button').click();
    await waitFor(async () => (await api('GET', '/api/users/9100')).status === 200, { message: 'the retried pull did not reach the server' });
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#pull-failures tr[data-user="9100"]').length === 0, undefined, { timeout: 10_000 });
    expect((await api('GET', '/api/pull-failures?user=9100')).body).toEqual([]);
  });

  it('reads at phone size, with no script errors or CSP violations on the way', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await go('#/terminals');
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#terminals-table tr[data-state="online"]').length >= 3, undefined, { timeout: 10_000 });
    // the page itself does not scroll sideways (wide tables scroll in their own box)
    expect(await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth + 1)).toBe(true);
    await shot('terminals-phone');
    await go('#/user/ada');
    await page.locator('#sync-table').waitFor();
    expect(await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth + 1)).toBe(true);
    await shot('user-phone');
    await page.setViewportSize({ width: 1366, height: 768 });
    // sign out forgets the token
    await page.locator('#signout').click();
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('termsync.adminToken'))).toBeNull();
    expect(problems).toEqual([]);
  });
});

