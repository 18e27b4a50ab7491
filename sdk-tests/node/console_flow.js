// Drives Keyhole's web console in headless Chromium as an operator would: sign in with the master key,
// look at the collections, run a query in the explorer, create a key filtered to one vendor, open that
// key's dashboard, revoke the key and reload the dashboard. Prints what each step showed as JSON and saves
// screenshots to SCREENSHOT_DIR.
//
// Environment: KEYHOLE_URL (http://127.0.0.1:port), KEYHOLE_MASTER_KEY, SCREENSHOT_DIR, CHROMIUM.
const path = require('path');
const { chromium } = require('playwright-core');

const { KEYHOLE_URL, KEYHOLE_MASTER_KEY, SCREENSHOT_DIR } = process.env;

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
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${KEYHOLE_URL}/console`);
    await page.fill('#sign-in-key', KEYHOLE_MASTER_KEY);
    await page.click('#sign-in-form button');
    await page.waitForSelector('#view h3');
    results.who = await page.textContent('#who');
    results.collections = await page.$$eval('#view h3', (nodes) => nodes.map((node) => node.textContent));
    await shot(page, 'console-collections');

    await page.click('button[data-view=explorer]');
    await page.selectOption('select[name=analysis]', 'count');
    await page.fill('input[name=collection]', 'orders');
    await page.fill('input[name=group_by]', 'vendor_id');
    await page.click('#view form button[type=submit]');
    await page.waitForSelector('#view table');
    results.explorer = await page.$$eval('#view table tr', (rows) => rows.slice(1).map((row) => [...row.cells].map((cell) => cell.textContent)));
    await page.waitForTimeout(300);
    await shot(page, 'console-explorer');

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
