// Drives Keyhole's web console in headless Chromium as an operator would: sign in with a wrong key (the
// refusal says what was tried), then the master key, look at the collections and their event counts, run a
// query in the explorer and show its times in UTC and in the browser's zone (Asia/Kolkata), create a key
// filtered to one vendor, choose what its dashboard shows (collection, properties, interval) and open it, revoke the key and reload the dashboard, unrevoke it, edit it (autofill, an origin),
// delete it; then sign in with the organization key, list the projects and create one. Prints what each
// step showed as JSON and saves screenshots to SCREENSHOT_DIR.
//
// Environment: KEYHOLE_URL (http://127.0.0.1:port), KEYHOLE_MASTER_KEY, KEYHOLE_ORG_KEY, SCREENSHOT_DIR,
// CHROMIUM.
const path = require('path');
const { chromium } = require('playwright-core');

const { KEYHOLE_URL, KEYHOLE_MASTER_KEY, KEYHOLE_ORG_KEY, SCREENSHOT_DIR } = process.env;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const shot = async (page, name) => {
    if (SCREENSHOT_DIR) await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
  };
  const results = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 }, timezoneId: 'Asia/Kolkata' });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${KEYHOLE_URL}/console`);
    await page.fill('#sign-in-key', 'not-a-key-of-this-server');
    await page.click('#sign-in-form button');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Sign-in failed'));
    results.wrong_key = await page.textContent('#notice');
    await page.fill('#sign-in-key', KEYHOLE_MASTER_KEY);
    await page.click('#sign-in-form button');
    await page.waitForSelector('#view h3');
    results.who = await page.textContent('#who');
    results.collections = await page.$$eval('#view h3', (nodes) => nodes.map((node) => node.textContent));
    results.event_counts = await page.$$eval('#view .event-count', (nodes) => nodes.map((node) => node.textContent));
    results.geo_off = await page.$eval('#geo-off', (node) => node.textContent).catch(() => null);
    await shot(page, 'console-collections');

    await page.click('button[data-view=explorer]');
    await page.selectOption('select[name=analysis]', 'count');
    await page.fill('input[name=collection]', 'purchases');
    await page.fill('input[name=group_by]', 'vendor_id');
    await page.click('#view form button[type=submit]');
    await page.waitForSelector('#view table');
    results.explorer = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => [...row.cells].map((cell) => cell.textContent)));
    await page.waitForTimeout(300);
    await shot(page, 'console-explorer');
    // An interval Keen has that no menu lists, typed; its buckets' times in UTC, then in the browser's zone.
    await page.fill('input[name=group_by]', '');
    await page.fill('input[name=interval]', 'every_12_hours');
    await page.fill('input[name=timeframe]', 'previous_1_days');
    await page.click('#view form button[type=submit]');
    await page.waitForFunction(() => (document.querySelector('#view .raw-result') || {}).textContent?.includes('T12:00:00.000Z'));
    results.times_utc = await page.$$eval('#view .raw-result tr', (rows) => rows.slice(1).map((row) => row.textContent));
    await page.selectOption('select[name=time-zone]', 'browser');
    results.times_browser = await page.$$eval('#view .raw-result tr', (rows) => rows.slice(1).map((row) => row.textContent));
    await shot(page, 'console-explorer-browser-zone');

    await page.click('button[data-view=keys]');
    await page.waitForSelector('#view form input[name=name]');
    const form = '#view form:last-of-type';
    await page.fill(`${form} input[name=name]`, 'acme dashboard');
    await page.click(`${form} fieldset:nth-of-type(2) button`);
    await page.fill(`${form} .filter input[name=property]`, 'vendor_id');
    await page.fill(`${form} .filter input[name=value]`, 'acme');
    // A value that cannot be an origin is refused before anything is sent.
    await page.fill(`${form} textarea[name=origins]`, 'not an origin');
    await page.click(`${form} button[type=submit]`);
    results.invalid_origin = await page.textContent('#notice');
    await page.fill(`${form} textarea[name=origins]`, '');
    await page.click(`${form} button[type=submit]`);
    await page.waitForSelector('#new-secret');
    results.secret = await page.textContent('#new-secret');
    await shot(page, 'console-key-created');
    results.keys = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => row.cells[0].textContent));

    // The dashboard shows what is chosen: this collection, these properties, this interval.
    await page.fill('#notice .dashboard-chooser input[name=collection]', 'purchases');
    await page.fill('#notice .dashboard-chooser input[name=unique]', 'buyer.id');
    await page.fill('#notice .dashboard-chooser input[name=group_by]', 'item.kind');
    await page.fill('#notice .dashboard-chooser input[name=interval]', 'weekly');
    const [dashboard] = await Promise.all([page.waitForEvent('popup'), page.click('#notice a.dashboard-link')]);
    await dashboard.waitForFunction(() => window.__results !== undefined, null, { timeout: 30000 });
    await dashboard.waitForTimeout(500);
    results.dashboard = await dashboard.evaluate(() => window.__results);
    await shot(dashboard, 'console-key-dashboard');

    await page.click('#view button.danger:has-text("revoke")');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Revoked'));
    results.after_revoke = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => row.cells[4].textContent));
    await dashboard.reload();
    await dashboard.waitForFunction(() => window.__results !== undefined, null, { timeout: 30000 });
    results.dashboard_after_revoke = await dashboard.evaluate(() => window.__results);
    await shot(dashboard, 'console-key-dashboard-revoked');

    await page.click('#view button:has-text("unrevoke")');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Unrevoked'));
    await page.click('#view button:has-text("edit")');
    await page.waitForSelector('#view h2:has-text("Edit")');
    await page.click('#view fieldset:nth-of-type(3) button');
    await page.fill('#view .autofill input[name=path]', 'vendor_id');
    await page.fill('#view .autofill input[name=value]', 'acme');
    await page.check('#view input[name=writes]');
    await page.fill('#view textarea[name=origins]', 'https://*.acme.example');
    await page.click('#view button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#notice').textContent === 'Key saved.');
    results.edited = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => [row.cells[2].textContent, row.cells[4].textContent]));
    page.once('dialog', (dialog) => dialog.accept());
    await page.click('#view button:has-text("delete")');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Deleted'));
    results.after_delete = await page.$$eval('#view table tr', (rows) => rows.length);

    await page.click('#sign-out');
    await page.waitForSelector('#sign-in-key');
    await page.fill('#sign-in-key', KEYHOLE_ORG_KEY);
    await page.click('#sign-in-form button');
    await page.waitForSelector('#view table');
    results.projects = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => row.cells[0].textContent));
    await page.fill('#create-project input[name=name]', 'second shop');
    await page.click('#create-project button');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Project created'));
    results.after_create = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => row.cells[0].textContent));
    results.who_after_create = await page.textContent('#who');
    await shot(page, 'console-projects');
    results.page_errors = errors;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
