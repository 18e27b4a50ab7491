// Drives the console's dashboard editor in headless Chromium: run a query in the Explorer, then build a
// dashboard from a saved query and that query, move a tile, set a timeframe control, save it, and preview
// it as a tenant's embed token. Prints what was shown as JSON; saves a screenshot to SCREENSHOT_DIR.
//
// Environment: KEYHOLE_URL, KEYHOLE_MASTER_KEY, PREVIEW_TOKEN, SCREENSHOT_DIR, CHROMIUM.
const path = require('path');
const { chromium } = require('playwright-core');

const { KEYHOLE_URL, KEYHOLE_MASTER_KEY, PREVIEW_TOKEN, SCREENSHOT_DIR } = process.env;

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const results = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${KEYHOLE_URL}/console`);
    await page.fill('#sign-in-key', KEYHOLE_MASTER_KEY);
    await page.click('#sign-in-form button');
    await page.waitForFunction(() => document.querySelector('#who').textContent.includes('· project'));

    await page.click('button[data-view=explorer]');
    await page.selectOption('select[name=analysis]', 'count');
    await page.fill('input[name=collection]', 'orders');
    await page.fill('input[name=timeframe]', 'this_30_days');
    await page.click('#view form button[type=submit]');
    await page.waitForSelector('#view .raw-result');

    await page.click('button[data-view=dashboards]');
    await page.waitForSelector('#new-dashboard');
    await page.click('#new-dashboard');
    await page.waitForSelector('#dashboard-form');
    await page.fill('#dashboard-form input[name=name]', 'console-made');
    await page.fill('#dashboard-form input[name=title]', 'Made in the console');
    await page.click('#add-saved');
    await page.waitForSelector('.tile-row[data-tile="0"]');
    await page.click('#add-explorer');
    await page.waitForSelector('.tile-row[data-tile="1"]');
    await page.click('.tile-row[data-tile="1"] button:has-text("up")');
    await page.waitForFunction(() => (document.querySelector('.tile-row[data-tile="0"] .source') || { textContent: '' }).textContent.startsWith('count'));
    await page.fill('.tile-row[data-tile="0"] input[name=tile-title]', 'Orders');
    await page.fill('.tile-row[data-tile="1"] input[name=width]', '12');
    await page.fill('#dashboard-form input[name=timeframes]', 'this_7_days, this_30_days');
    await page.fill('#dashboard-form input[name=accent]', '#7a3cc8');
    await page.click('#dashboard-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#notice').textContent.startsWith('Saved dashboard'));
    results.saved = await page.textContent('#notice');

    await page.fill('#preview-form input[name=credential]', PREVIEW_TOKEN);
    await page.click('#preview-form button');
    await page.waitForFunction(() => {
      const dashboard = document.querySelector('#dashboard-preview keyhole-dashboard');
      return dashboard && dashboard.dataset.state && dashboard.dataset.state !== 'loading';
    }, null, { timeout: 30000 });
    results.preview = await page.evaluate(() => {
      const dashboard = document.querySelector('#dashboard-preview keyhole-dashboard');
      return {
        state: dashboard.dataset.state,
        title: dashboard.shadowRoot.querySelector('h1').textContent,
        tiles: [...dashboard.shadowRoot.querySelectorAll('.tile')].map((tile) => ({ state: tile.dataset.state, result: tile.dataset.result ? JSON.parse(tile.dataset.result) : null })),
      };
    });
    results.snippet = await page.textContent('#embed-snippet');
    await page.waitForTimeout(300);
    if (SCREENSHOT_DIR) await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'console-dashboard-editor.png'), fullPage: true });
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
