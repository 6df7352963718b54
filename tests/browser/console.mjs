// Journeys through the web console in a real browser: Debian's Chromium, driven by
// playwright-core, against the real service on its real PostgreSQL (started by
// scripts/browser-test, which passes BASE_URL, ADMIN_TOKEN and SHOTS). Each step asserts what a
// person would see; a screenshot of every page goes to $SHOTS.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.BASE_URL;
const token = process.env.ADMIN_TOKEN;
const shots = process.env.SHOTS;
assert.ok(base && token && shots, 'BASE_URL, ADMIN_TOKEN and SHOTS are set');

const profile = mkdtempSync(join(tmpdir(), 'fw-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const page = browser.pages()[0] ?? await browser.newPage();
let dialogs = 0;
page.on('dialog', async (d) => { dialogs += 1; await d.dismiss(); });
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
// The size of every page the journeys load (the console's budget: 150 KB each).
const weights = new Map();
page.on('response', async (r) => {
  if (r.request().resourceType() !== 'document' || r.status() !== 200) return;
  const bytes = (await r.body().catch(() => Buffer.alloc(0))).length;
  weights.set(new URL(r.url()).pathname, bytes);
});
// What has the keyboard's focus.
const focused = () => page.evaluate(() => {
  const e = document.activeElement;
  return `${e.tagName.toLowerCase()}:${(e.getAttribute('aria-label') || e.textContent || e.name || e.id || '').trim()}`;
});
const step = (what) => console.log(`ok - ${what}`);

// Sign in: a wrong token is refused, the right one opens the overview.
await page.goto(`${base}/console`);
assert.match(page.url(), /\/console\/login$/);
await shot('login');
await page.getByLabel('Admin token').fill('not-the-token');
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('alert').waitFor();
assert.match(await page.getByRole('alert').innerText(), /not the admin token/);
step('a wrong token is refused');
await page.getByLabel('Admin token').fill(token);
await page.keyboard.press('Enter');
await page.waitForURL(`${base}/console`);
assert.ok(await page.getByText('Inbox backlog').isVisible());
const cookies = await browser.cookies();
const session = cookies.find((c) => c.name === 'fw_session');
assert.ok(session && session.httpOnly && session.sameSite === 'Strict', 'fw_session is HttpOnly, SameSite=Strict');
assert.ok(!(await page.content()).includes(token), 'the token is not in the page');
await shot('overview');
step('signed in with the token (keyboard only)');

// Find an order by partner reference and read its timeline.
await page.getByRole('link', { name: 'Find a payment' }).click();
await shot('search');
await page.getByLabel('Partner reference, reference or event id').fill('order_browser_1');
await page.getByRole('button', { name: 'Find' }).click();
await page.waitForURL(/\/console\/transactions\/fluid\/FLU-BROWSER-1$/);
const timeline = await page.locator('ol.timeline').innerText();
assert.ok(timeline.indexOf('transaction.pending received') < timeline.indexOf('transaction.completed received'), 'in time order');
await shot('transaction');
step('found order_browser_1 and read its timeline');

// Open an event: its raw body and whether it verifies now.
await page.getByRole('link', { name: /transaction\.completed received/ }).click();
await page.getByText('yes: the signature checks').waitFor();
assert.ok(await page.locator('pre code').first().innerText().then((t) => t.includes('"amount": 100.00')));
await shot('event');
step('the event shows its exact body and verifies now');

// The hostile event renders as text, and no script runs.
await page.goto(`${base}/console/events/fluid/evt_browser_xss`);
assert.ok((await page.locator('pre code').first().innerText()).includes('<script>alert(1)</script>'));
assert.equal(await page.locator('img[src=x]').count(), 0);
assert.equal(dialogs, 0, 'no dialog fired');
step('a <script> payload is shown as text');

// Events list with a filter.
await page.goto(`${base}/console/events`);
await page.getByLabel('Status').selectOption('dead');
await page.getByRole('button', { name: 'Filter' }).click();
assert.ok(await page.getByRole('link', { name: 'evt_browser_xss' }).isVisible());
await shot('events');
step('events filtered by status');

// Replay a dead letter and see how it ended.
await page.getByRole('link', { name: 'Dead letters' }).click();
await shot('dead-letters');
await page.getByRole('row', { name: /evt_browser_xss/ }).getByRole('button', { name: 'Replay' }).click();
assert.match(await page.getByRole('status').innerText(), /Replayed: dead/);
step('replayed a dead letter: processed again, dead again with its error');

// A POST without the CSRF token is refused.
const forged = await page.evaluate(async () => {
  const r = await fetch('/console/dead-letters/replay-all', { method: 'POST', body: new URLSearchParams({ csrf: 'forged' }) });
  return r.status;
});
assert.equal(forged, 403);
step('a POST without the CSRF token is refused');

// The keyboard alone: a skip link first, then the navigation in reading order; find an order
// with Tab, typing and Enter.
await page.goto(`${base}/console`);
await page.keyboard.press('Tab');
assert.equal(await focused(), 'a:Skip to content');
await page.keyboard.press('Tab');
assert.equal(await focused(), 'a:Overview');
await page.keyboard.press('Tab');
assert.equal(await focused(), 'a:Find a payment');
await page.keyboard.press('Enter');
await page.waitForURL(/\/console\/search$/);
let tabs = 0;
while (!(await focused()).startsWith('input:') && tabs < 12) { await page.keyboard.press('Tab'); tabs += 1; }
assert.equal(await page.evaluate(() => document.activeElement.id), 'q', 'the search box is reached by Tab');
await page.keyboard.type('order_browser_1');
await page.keyboard.press('Enter');
await page.waitForURL(/\/console\/transactions\/fluid\/FLU-BROWSER-1$/);
step('the keyboard alone: skip link, navigation in order, search and Enter');

// Narrow screens: nothing scrolls sideways at 390 px.
await page.setViewportSize({ width: 390, height: 844 });
for (const path of ['/console', '/console/search', '/console/transactions/fluid/FLU-BROWSER-1',
  '/console/events', '/console/events/fluid/evt_browser_xss', '/console/dead-letters']) {
  await page.goto(`${base}${path}`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `${path} is ${wide} px wide at 390`);
}
await page.goto(`${base}/console`);
await shot('overview-390px');
await page.setViewportSize({ width: 1280, height: 900 });
step('every page fits 390 px');

const heaviest = Math.max(...weights.values());
assert.ok(weights.size >= 8 && heaviest <= 150 * 1024, `pages: ${JSON.stringify([...weights])}`);
step(`no page over 150 KB (${weights.size} pages, heaviest ${heaviest} bytes)`);

// Sign out, and be refused after.
await page.getByRole('button', { name: 'Sign out' }).click();
await page.waitForURL(/\/console\/login$/);
await page.goto(`${base}/console/dead-letters`);
assert.match(page.url(), /\/console\/login$/);
step('signed out, and refused after');

await browser.close();
console.log('browser journeys: all passed');
