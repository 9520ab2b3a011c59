// The ops console in headless Chromium against the real `tally serve`:
// a person signs in, approves a pending cancel, reverts a price change and
// replays a quarantined order, and each shows up in the admin API.
//
// Run: bash infra/browser-test.sh (or `node --test tests/browser/` once
// target/debug/tally is built and Chromium is at /usr/bin/chromium).
// Env: TALLY_BIN (default target/debug/tally), CHROMIUM (default
// /usr/bin/chromium), CONSOLE_SCREENSHOT (default docs/console.png),
// CONSOLE_SHOTS_DIR (if set, a screenshot of each view goes there too).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, createWriteStream, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = resolve(ROOT, process.env.TALLY_BIN || 'target/debug/tally');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = resolve(ROOT, process.env.CONSOLE_SCREENSHOT || 'docs/console.png');
const TOKEN = 'console-test-' + randomBytes(16).toString('hex');
const ERP_SECRET = 'erp-secret-0123456789';
const SHOP_SECRET = 'shop-secret-0123456789';
const ACTOR = 'Ana (ops)';
const UI_TIMEOUT = 15_000;
const SHOTS = process.env.CONSOLE_SHOTS_DIR ? resolve(process.env.CONSOLE_SHOTS_DIR) : null;

// ---------- the server ----------

let server = null;
let base = '';
let dataDir = '';
let logPath = '';

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'tally-console-'));
  logPath = join(dataDir, 'tally.log');
  const log = createWriteStream(logPath);
  const child = spawn(BIN, ['serve', '--addr', '127.0.0.1:0', '--data', join(dataDir, 'data')], {
    env: { ...process.env, TALLY_ADMIN_TOKEN: TOKEN, RUST_LOG: process.env.RUST_LOG || 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server = child;
  child.stderr.pipe(log);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('tally did not print its address within 30 s')), 30_000);
    child.once('error', (e) => { clearTimeout(timer); fail(e); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`tally exited before listening (code ${code}, signal ${signal}); log: ${logPath}`));
    });
    // Keep reading stdout to the end so the child never blocks on a full pipe.
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^tally listening on (http:\/\/\S+)/.exec(line);
      if (m) { clearTimeout(timer); ok(m[1]); }
    });
  });
}

function stopServer() {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  server = null;
}
// However the run ends, the server does not outlive it.
process.on('exit', stopServer);

function logTail() {
  try { return readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n'); } catch { return ''; }
}

// ---------- the API, as a merchant's systems and a person would use it ----------

async function call(method, path, body, token = TOKEN) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: 'Bearer ' + token, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  return { status: res.status, body: json };
}
async function get(path) {
  const r = await call('GET', path);
  assert.equal(r.status, 200, `GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function put(path, body) {
  const r = await call('PUT', path, body);
  assert.equal(r.status, 200, `PUT ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function post(path, body) {
  const r = await call('POST', path, body);
  assert.equal(r.status, 200, `POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Signs `events` (one canonical event or an array) as a source and posts them. */
async function send(events, source = 'erp', secret = ERP_SECRET) {
  const body = JSON.stringify(events);
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  const res = await fetch(`${base}/events/${source}`, {
    method: 'POST',
    headers: { 'X-Tally-Signature': `t=${t},v1=${v1}`, 'Content-Type': 'application/json' },
    body,
  });
  const text = await res.text();
  assert.equal(res.status, 202, `POST /events/${source}: ${res.status} ${text}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something truthy, or fails naming `what`. */
async function until(what, probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until everything accepted has been processed. */
async function settle() {
  await until('tally to be idle', async () => {
    const res = await fetch(base + '/healthz');
    const h = await res.json();
    return h.idle === true;
  }, 60_000);
}

const iso = (msAgo = 0) => new Date(Date.now() - msAgo).toISOString();
let seq = 0;
const ev = (type, data, msAgo = 0) => ({ id: `console-${type}-${++seq}`, type, occurred_at: iso(msAgo), data });

// ---------- seed: a small shop's morning ----------

const seeded = {};

async function seed() {
  await put('/v1/sources/erp', { platform: 'tally', secret: ERP_SECRET, channel: 'erp' });
  await put('/v1/sources/webshop', { platform: 'tally', secret: SHOP_SECRET, channel: 'webshop', authoritative_stock: false });
  await put('/v1/products/TSHIRT-M', { currency: 'EUR', unit_cost: '10.00', price: '19.99', safety_stock: 1, channel_buffers: { webshop: 2 } });
  // The SKU whose price the test changes and reverts: nothing else touches its stock.
  await put('/v1/products/HOODIE-L', {
    currency: 'EUR', unit_cost: '10.00', price: '19.99',
    policy: { min_margin_pct: '20', max_step_pct: '5', competitor_strategy: 'undercut', undercut_by: '0.10', max_stock_age_s: 86400, min_interval_s: 0 },
  });
  // A move beyond approval_step_pct waits as a price_change action.
  await put('/v1/products/CAP-RED', {
    currency: 'EUR', unit_cost: '6.00', price: '14.00',
    policy: { min_margin_pct: '20', max_step_pct: '30', approval_step_pct: '10', competitor_strategy: 'undercut', undercut_by: '0.50', max_stock_age_s: 86400, min_interval_s: 0 },
  });
  await put('/v1/products/MUG-BLK', { currency: 'EUR', unit_cost: '3.20', price: '9.50', safety_stock: 2 });

  await send([
    ev('stock.counted', { sku: 'TSHIRT-M', location: 'WH-AMS', on_hand: 40 }, 60_000),
    ev('stock.counted', { sku: 'TSHIRT-M', location: 'WH-RTM', on_hand: 12 }, 60_000),
    ev('stock.counted', { sku: 'HOODIE-L', location: 'WH-AMS', on_hand: 25 }, 60_000),
    ev('stock.counted', { sku: 'CAP-RED', location: 'WH-AMS', on_hand: 18 }, 60_000),
    ev('stock.counted', { sku: 'MUG-BLK', location: 'WH-RTM', on_hand: 64 }, 60_000),
  ]);
  await settle();
  // The counts' own first pricing decisions, before any competitor is seen.
  for (const sku of ['HOODIE-L', 'CAP-RED']) {
    await until(`a first decision for ${sku}`, async () => (await get(`/v1/prices/${sku}`)).last_decision);
  }
  // The webshop reports its own figure, which differs from the ledger's: drift.
  await send(ev('stock.counted', { sku: 'TSHIRT-M', location: 'WH-AMS', on_hand: 31 }, 30_000), 'webshop', SHOP_SECRET);

  // An order, then a refund request before it ships: a pending cancel.
  const order = (id, qty) => ev('order.placed', {
    order_id: id, channel: 'erp', currency: 'EUR', total: (qty * 19.99).toFixed(2),
    lines: [{ sku: 'TSHIRT-M', qty, unit_price: '19.99' }],
  }, 20_000);
  await send(order('1001', 2));
  await settle();
  await send(ev('order.refund_requested', { order_id: '1001', amount: '39.98', reason: 'ordered the wrong size' }));
  seeded.cancel = await until('a pending cancel for order 1001', async () => {
    const { actions } = await get('/v1/actions?status=pending');
    return actions.find((a) => a.order_id === '1001' && a.kind === 'cancel');
  });
  assert.equal(seeded.cancel.requires_approval, true);

  // A failed payment: a pending hold (reversible, still waits for a person).
  await send(order('1002', 1));
  await settle();
  await send(ev('order.payment_failed', { order_id: '1002' }));
  await until('a pending hold for order 1002', async () => {
    const { actions } = await get('/v1/actions?status=pending');
    return actions.find((a) => a.order_id === '1002');
  });

  // Competitors: HOODIE-L is undercut inside its step (applied); CAP-RED's
  // move is larger than its approval step (waits).
  await send(ev('price.competitor_observed', { sku: 'HOODIE-L', competitor: 'rival.example', price: '17.50', currency: 'EUR' }));
  await send(ev('price.competitor_observed', { sku: 'CAP-RED', competitor: 'rival.example', price: '11.00', currency: 'EUR' }));
  await settle();
  const changed = await until('a price.changed record for HOODIE-L', async () => {
    const { records } = await get('/v1/audit?entity=price:HOODIE-L');
    return records.find((r) => r.kind === 'price.changed');
  });
  seeded.priceChange = changed;
  assert.equal(changed.before.price, '19.99');
  seeded.changedTo = changed.after.price;
  assert.notEqual(seeded.changedTo, '19.99');
  await until('a pending price change for CAP-RED', async () => {
    const { actions } = await get('/v1/actions?status=pending');
    return actions.find((a) => a.sku === 'CAP-RED' && a.kind === 'price_change');
  });

  // An order for a SKU nobody configured: quarantined. And a count that
  // cannot be right, with markup in it that must stay text.
  await send(ev('order.placed', {
    order_id: '1003', channel: 'erp', currency: 'EUR',
    lines: [{ sku: 'GHOST-1', qty: 1, unit_price: '24.00' }],
  }));
  await send(ev('stock.counted', { sku: '<img src=x onerror="window.__xss=1">', location: 'WH-AMS', on_hand: -4 }));
  await settle();
  seeded.ghost = await until('the GHOST-1 order in quarantine', async () => {
    const { items } = await get('/v1/quarantine');
    return items.find((q) => q.payload.includes('GHOST-1'));
  });
  assert.ok(seeded.ghost.reasons.length > 0);
  await until('the bad count in quarantine', async () => {
    const { items } = await get('/v1/quarantine');
    return items.find((q) => q.payload.includes('onerror'));
  });
  // The cause is fixed (the product exists now, with stock), so a replay works.
  await put('/v1/products/GHOST-1', { currency: 'EUR', unit_cost: '11.00', price: '24.00' });
  await send(ev('stock.counted', { sku: 'GHOST-1', location: 'WH-AMS', on_hand: 10 }, 10_000));
  await settle();
}

// ---------- the browser ----------

let browser = null;
let context = null;
let page = null;

async function openConsole() {
  await page.goto(base + '/');
  await page.getByTestId('login-form').waitFor({ timeout: UI_TIMEOUT });
}

async function signIn(token, name = ACTOR) {
  await page.getByLabel('Admin token').fill(token);
  await page.getByLabel(/Your name/).fill(name);
  await page.getByTestId('login-submit').click();
}

/** A screenshot of the current view, only when CONSOLE_SHOTS_DIR is set. */
async function shot(name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + '.png'), fullPage: true });
}

/** Polls a locator's text until `check` accepts it. */
async function textUntil(locator, check, what) {
  const deadline = Date.now() + UI_TIMEOUT;
  let text = '';
  for (;;) {
    text = (await locator.count()) ? (await locator.first().textContent()) ?? '' : '';
    if (check(text)) return text;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; text was: ${JSON.stringify(text)}`);
    await sleep(100);
  }
}

describe('ops console', () => {
  const pageErrors = [];

  before(async () => {
    assert.ok(existsSync(BIN), `${BIN} is missing: run \`cargo build -p tally\` first`);
    try {
      base = await startServer();
      await seed();
    } catch (e) {
      e.message += '\n--- tally log (tail) ---\n' + logTail();
      throw e;
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
    context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1,
      locale: 'en-GB',
      timezoneId: 'UTC',
      colorScheme: 'light',
      reducedMotion: 'reduce',
    });
    page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    page.on('pageerror', (e) => { pageErrors.push(e); });
    // A refused request is logged by Chromium as "Failed to load resource";
    // anything else (a CSP refusal, a script error) is a fault of the page.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
    });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    stopServer();
    if (dataDir && !process.env.KEEP_DATA) rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a wrong token on the login form and keeps it out of the URL', async () => {
    await openConsole();
    await signIn('not-the-token');
    const error = page.getByTestId('login-error');
    await textUntil(error, (t) => /refused/i.test(t), 'the login error');
    assert.equal(await page.getByTestId('app-view').isVisible(), false, 'the console stays hidden');
    assert.equal(await page.getByTestId('logout').isVisible(), false, 'no session controls before signing in');
    assert.ok(!page.url().includes('not-the-token'), page.url());
    await shot('login-refused');
    const kept = await page.evaluate(() => Object.values(sessionStorage).join(' '));
    assert.ok(!kept.includes('not-the-token'), 'a refused token is not kept');
  });

  it('signs in and shows the pending actions, with rationale and evidence', async () => {
    await signIn(TOKEN);
    const card = page.getByTestId(`action-${seeded.cancel.id}`);
    await card.waitFor({ state: 'visible' });
    assert.match(await page.getByTestId(`rationale-${seeded.cancel.id}`).textContent(), /has not shipped: cancel it/);
    assert.match(await page.getByTestId(`evidence-${seeded.cancel.id}`).textContent(), /39\.98/);
    assert.ok(!page.url().includes(TOKEN), 'the token is not in the URL');
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    await textUntil(page.getByTestId('badge-actions'), (t) => parseInt(t, 10) >= 3, 'the pending badge');
    await textUntil(page.getByTestId('badge-quarantine'), (t) => parseInt(t, 10) >= 2, 'the quarantine badge');
    await textUntil(page.getByTestId('updated'), (t) => t.startsWith('Updated'), 'a full refresh');
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  });

  it('approves the cancel with a note that survives the refresh', async () => {
    const id = seeded.cancel.id;
    const note = page.getByTestId(`note-${id}`);
    await note.fill('customer confirmed by mail');
    // A refresh (every 3 s) happens while the note is typed; it stays.
    const before = await page.getByTestId('updated').getAttribute('data-at');
    await until('a refresh of the console', async () =>
      (await page.getByTestId('updated').getAttribute('data-at')) !== before, UI_TIMEOUT);
    assert.equal(await note.inputValue(), 'customer confirmed by mail');
    assert.equal(await page.getByTestId(`actor-${id}`).inputValue(), ACTOR);

    await page.getByTestId(`approve-${id}`).click();
    const decided = await until('the cancel to be decided', async () => {
      const a = await get(`/v1/actions/${encodeURIComponent(id)}`);
      return a.status !== 'pending' ? a : null;
    });
    assert.ok(['approved', 'executed'].includes(decided.status), decided.status);
    const { records } = await get(`/v1/audit?entity=${encodeURIComponent('action:' + id)}`);
    const approval = records.find((r) => r.kind === 'action.approved');
    assert.ok(approval, JSON.stringify(records));
    assert.equal(approval.actor, ACTOR);
    await page.getByTestId(`action-${id}`).waitFor({ state: 'detached' });
    await textUntil(page.getByTestId('status'), (t) => t.includes('Approved'), 'the approval message');
  });

  it('says "already decided" when an action was decided elsewhere', async () => {
    const stale = await get('/v1/actions?status=pending');
    const hold = stale.actions.find((a) => a.order_id === '1002');
    assert.ok(hold, 'the hold is still pending');
    await page.getByTestId(`action-${hold.id}`).waitFor();
    // This page keeps seeing the list from before, while someone else
    // rejects the hold; then this person approves it.
    const pendingList = (url) => url.pathname === '/v1/actions' && url.searchParams.get('status') === 'pending';
    await page.route(pendingList, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(stale) }));
    try {
      await post(`/v1/actions/${encodeURIComponent(hold.id)}/reject`, { actor: 'ben', note: 'paid by phone' });
      await page.getByTestId(`approve-${hold.id}`).click();
      await textUntil(page.getByTestId(`action-msg-${hold.id}`), (t) => /already decided/i.test(t), 'the 409 message');
    } finally {
      await page.unroute(pendingList);
    }
    const a = await get(`/v1/actions/${encodeURIComponent(hold.id)}`);
    assert.equal(a.status, 'rejected', 'the first decision stands');
    await page.getByTestId(`action-${hold.id}`).waitFor({ state: 'detached' });
  });

  it('reverts the price change', async () => {
    await page.getByRole('tab', { name: /Prices/ }).click();
    await textUntil(page.getByTestId('price-value-HOODIE-L'), (t) => t.includes(seeded.changedTo), 'the changed price');
    await page.getByTestId(`revert-${seeded.priceChange.id}`).waitFor();
    await shot('prices');
    await page.getByTestId('revert-note').fill('too far below the market');
    const revert = page.getByTestId(`revert-${seeded.priceChange.id}`);
    await revert.click();
    await until('HOODIE-L back at 19.99', async () => (await get('/v1/prices/HOODIE-L')).price === '19.99');
    const { records } = await get('/v1/audit?entity=price:HOODIE-L');
    assert.equal(records[0].kind, 'price.reverted');
    assert.equal(records[0].actor, ACTOR);
    await textUntil(page.getByTestId('price-value-HOODIE-L'), (t) => t.includes('19.99'), 'the reverted price in the table');
    // Reverting the same change again is refused, and the page says why.
    await revert.click();
    await textUntil(page.getByTestId(`audit-msg-${seeded.priceChange.id}`), (t) => /Cannot revert/.test(t), 'the 409 message');
  });

  it('replays the quarantined order and shows payloads as text', async () => {
    await page.getByRole('tab', { name: /Quarantine/ }).click();
    const id = seeded.ghost.id;
    await page.getByTestId(`quarantine-${id}`).waitFor();
    assert.match(await page.getByTestId(`payload-${id}`).textContent(), /GHOST-1/);
    // The markup in the bad count is shown, not run.
    const bad = (await get('/v1/quarantine')).items.find((q) => q.payload.includes('onerror'));
    await textUntil(page.getByTestId(`payload-${bad.id}`), (t) => t.includes('<img src=x'), 'the escaped payload');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.locator('img').count(), 0);
    await shot('quarantine');

    await page.getByTestId(`replay-${id}`).click();
    await until('the GHOST-1 order out of quarantine', async () =>
      !(await get('/v1/quarantine')).items.some((q) => q.id === id));
    await page.getByTestId(`quarantine-${id}`).waitFor({ state: 'detached' });
    // The bad count is still invalid: replaying it shows its reasons.
    await page.getByTestId(`replay-${bad.id}`).click();
    await textUntil(page.getByTestId(`quarantine-msg-${bad.id}`), (t) => /still invalid/i.test(t), 'the 422 reasons');
  });

  it('shows stock per location and channel, with the webshop drift flagged', async () => {
    // The tabs work from the keyboard: from Quarantine, two steps left is Stock.
    await page.getByTestId('tab-quarantine').focus();
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.getByTestId('tab-stock').getAttribute('aria-selected'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-stock');
    await page.getByTestId('stock-TSHIRT-M').waitFor();
    await page.getByTestId('drift-flag-TSHIRT-M-webshop').waitFor();
    await page.getByTestId('drift-webshop-TSHIRT-M').waitFor();
    const row = await page.getByTestId('stock-TSHIRT-M').textContent();
    assert.match(row, /WH-AMS/);
    assert.match(row, /WH-RTM/);
    await shot('stock');
  });

  it('shows the manual cancel command as an alert, and refuses a resync of a receive-only channel', async () => {
    await page.getByRole('tab', { name: /Alerts/ }).click();
    const alerts = page.getByTestId('alerts-list');
    await textUntil(alerts, (t) => /cancel_order/.test(t) || /cancel/i.test(t), 'the channel_command_manual alert');
    await shot('alerts');
    await page.getByRole('tab', { name: /Channels/ }).click();
    await page.getByTestId('resync-erp').click();
    await textUntil(page.getByTestId('channel-msg-erp'), (t) => /receive-only/.test(t), 'the 409 for a receive-only channel');
    await shot('channels');
  });

  it('shows the activity feed, filtered', async () => {
    await page.getByRole('tab', { name: /Activity/ }).click();
    await page.getByTestId('activity-list').locator('li').first().waitFor();
    await shot('activity-all');
    await page.getByTestId('filter-workflow').selectOption('pricing');
    await page.getByTestId('filter-sku').fill('HOODIE-L');
    await page.getByTestId('filter-apply').click();
    const list = page.getByTestId('activity-list');
    await list.locator('li').first().waitFor();
    await textUntil(list.locator('li').first(), (t) => t.includes('price.reverted'), 'the newest record first');
    const entities = await list.locator('li strong').allTextContents();
    assert.ok(entities.length > 0);
    assert.ok(entities.filter((e) => e.startsWith('price:')).every((e) => e === 'price:HOODIE-L'), entities.join(', '));
    await shot('activity');
  });

  it('returns to the login form when the token stops working', async () => {
    await page.evaluate(() => sessionStorage.setItem('tally.console.token', 'revoked'));
    await textUntil(page.getByTestId('login-error'), (t) => /401/.test(t), 'the login form after a 401');
    assert.equal(await page.getByTestId('app-view').isVisible(), false);
    assert.equal(await page.getByTestId('logout').isVisible(), false);
    assert.deepEqual(pageErrors.map(String), [], 'no script errors on the page');
  });
});
