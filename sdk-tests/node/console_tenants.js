// Drives the console's Tenants page in headless Chromium: sign in with the organization key, open the
// project with its master key, set the tenancy property, create two tenants (their keys shown once), write
// events with their write keys, read their usage in the table, suspend and resume one, rotate its keys,
// and erase it after the confirmation that names what will be deleted (the wrong id typed first: nothing
// is erased). Prints what each step showed as JSON and saves screenshots to SCREENSHOT_DIR.
//
// Environment: KEYHOLE_URL, KEYHOLE_PROJECT, KEYHOLE_MASTER_KEY, KEYHOLE_ORG_KEY, SCREENSHOT_DIR, CHROMIUM.
const path = require('path');
const { chromium } = require('playwright-core');

const { KEYHOLE_URL, KEYHOLE_PROJECT, KEYHOLE_MASTER_KEY, KEYHOLE_ORG_KEY, SCREENSHOT_DIR } = process.env;

async function writeEvents(key, count) {
  for (let index = 0; index < count; index += 1) {
    const response = await fetch(`${KEYHOLE_URL}/3.0/projects/${KEYHOLE_PROJECT}/events/orders`, {
      method: 'POST',
      headers: { Authorization: key, 'Content-Type': 'application/json' },
      body: JSON.stringify({ amount: index }),
    });
    if (response.status !== 201) throw new Error(`write answered ${response.status}`);
  }
}

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
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    const notice = () => page.textContent('#notice');
    const waitNotice = (prefix) => page.waitForFunction((text) => document.querySelector('#notice').textContent.startsWith(text), prefix);
    const rows = () => page.$$eval('#view table tr', (trs) => trs.slice(1).map((row) => [...row.cells].slice(0, 8).map((cell) => cell.textContent)));
    await page.goto(`${KEYHOLE_URL}/console`);
    await page.fill('#sign-in-key', KEYHOLE_ORG_KEY);
    await page.click('#sign-in-form button');
    await page.waitForSelector('#view table');
    await page.fill('#view table input[name=master]', KEYHOLE_MASTER_KEY);
    await page.click('#view table button');
    await page.waitForFunction(() => document.querySelector('#who').textContent.includes('· project'));

    await page.click('button[data-view=tenants]');
    await page.waitForSelector('#tenancy-form');
    await page.fill('#tenancy-form input[name=property]', 'customer.id');
    await page.click('#tenancy-form button');
    await page.waitForSelector('#create-tenant');
    const keys = {};
    for (const [id, name] of [['acme', 'Acme Inc.'], ['globex', '']]) {
      await page.fill('#create-tenant input[name=id]', id);
      await page.fill('#create-tenant input[name=name]', name);
      await page.click('#create-tenant button[type=submit]');
      await waitNotice(`Tenant ${id} created`);
      keys[id] = { read: await page.textContent('#tenant-read-key'), write: await page.textContent('#tenant-write-key') };
    }
    results.key_lengths = [keys.acme.read.length, keys.acme.write.length];
    await writeEvents(keys.acme.write, 3);
    await writeEvents(keys.globex.write, 2);
    await page.click('button[data-view=tenants]');
    await page.waitForSelector('#create-tenant');
    results.table = await rows();
    await shot(page, 'console-tenants');

    const acmeRow = '#view table tr:has(td:text-is("acme"))';
    await page.click(`${acmeRow} button:has-text("suspend")`);
    await waitNotice('Suspended acme');
    results.suspended = await rows();
    await page.click(`${acmeRow} button:has-text("resume")`);
    await waitNotice('Resumed acme');
    await page.fill(`${acmeRow} input[name=grace]`, '600');
    await page.click(`${acmeRow} button:has-text("rotate")`);
    await waitNotice('New keys for acme');
    results.rotated = await notice();

    // The confirmation names what goes; a wrong id erases nothing.
    page.once('dialog', (dialog) => { results.confirmation = dialog.message(); dialog.accept('globex'); });
    await page.click(`${acmeRow} button:has-text("erase")`);
    await waitNotice('Nothing erased');
    results.wrong_id = await notice();
    page.once('dialog', (dialog) => dialog.accept('acme'));
    await page.click(`${acmeRow} button:has-text("erase")`);
    await waitNotice('Erased acme');
    results.erased = await notice();
    results.after_erase = await rows();
    await shot(page, 'console-tenants-erased');
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
