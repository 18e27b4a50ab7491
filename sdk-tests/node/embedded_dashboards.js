// Embeds a Keyhole dashboard in pages served from another origin than Keyhole's, in headless Chromium:
// iframes of the embed page (one per credential) and the <keyhole-dashboard> web component, on an origin
// the keys list (http://127.0.0.1:PAGE_PORT), and an iframe on one they do not (http://localhost:PAGE_PORT).
// Prints what each dashboard showed — its state and each tile's state and result — as JSON, and saves
// screenshots to SCREENSHOT_DIR.
//
// Environment: KEYHOLE_URL, PAGE_PORT, EMBED (JSON: {"project", "dashboard", "frames": [{"name", "kid",
// "token"}]}), SCREENSHOT_DIR, CHROMIUM.
const http = require('http');
const path = require('path');
const { chromium } = require('playwright-core');

const { KEYHOLE_URL, PAGE_PORT, SCREENSHOT_DIR } = process.env;
const EMBED = JSON.parse(process.env.EMBED);

const embedUrl = (frame) => `${KEYHOLE_URL}/embed/${EMBED.project}/${EMBED.dashboard}?kid=${encodeURIComponent(frame.kid)}#token=${encodeURIComponent(frame.token)}`;
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function pageFor(url) {
  const route = new URL(url, 'http://page').pathname;
  if (route === '/iframes') {
    return EMBED.frames.map((frame) => `<h2>${escape(frame.name)}</h2><iframe name="${escape(frame.name)}" src="${escape(embedUrl(frame))}" width="1100" height="560" style="border:0"></iframe>`).join('\n');
  }
  if (route === '/component') {
    return `<script src="${escape(KEYHOLE_URL)}/embed/keyhole-dashboard.js"></script>\n`
      + EMBED.frames.map((frame) => `<keyhole-dashboard id="${escape(frame.name)}" project="${escape(EMBED.project)}" dashboard="${escape(EMBED.dashboard)}" kid="${escape(frame.kid)}" token="${escape(frame.token)}" host="${escape(KEYHOLE_URL)}"></keyhole-dashboard>`).join('\n');
  }
  return null;
}

// What a <keyhole-dashboard> shows, once it has settled.
async function shown(context) {
  await context.waitForFunction(() => {
    const dashboard = document.querySelector('keyhole-dashboard');
    return dashboard && dashboard.dataset.state && dashboard.dataset.state !== 'loading';
  }, null, { timeout: 30000 });
  return context.evaluate(() => [...document.querySelectorAll('keyhole-dashboard')].map((dashboard) => ({
    id: dashboard.id,
    state: dashboard.dataset.state,
    panel: (dashboard.shadowRoot.querySelector('.panel') || {}).textContent || null,
    title: (dashboard.shadowRoot.querySelector('h1') || {}).textContent || null,
    tiles: [...dashboard.shadowRoot.querySelectorAll('.tile')].map((tile) => ({
      state: tile.dataset.state || null,
      result: tile.dataset.result === undefined ? null : JSON.parse(tile.dataset.result),
    })),
  })));
}

async function main() {
  const server = http.createServer((request, response) => {
    const body = pageFor(request.url);
    response.writeHead(body === null ? 404 : 200, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end(body === null ? 'not found' : `<!doctype html><html><body>${body}</body></html>`);
  });
  await new Promise((resolve) => server.listen(Number(PAGE_PORT), '127.0.0.1', resolve));
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const results = { frames: {}, components: {} };
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`http://127.0.0.1:${PAGE_PORT}/iframes`);
    for (const frame of EMBED.frames) {
      const context = page.frame({ name: frame.name });
      [results.frames[frame.name]] = await shown(context);
    }
    // The viewer's timeframe control runs the inline tiles again over the chosen timeframe.
    const acme = page.frame({ name: EMBED.frames[0].name });
    await acme.evaluate(() => {
      const select = document.querySelector('keyhole-dashboard').shadowRoot.querySelector('select[name=timeframe]');
      select.value = 'this_7_days';
      select.dispatchEvent(new Event('change'));
    });
    [results.acme_this_7_days] = await shown(acme);
    await acme.evaluate(() => {
      const select = document.querySelector('keyhole-dashboard').shadowRoot.querySelector('select[name=timeframe]');
      select.value = '';
      select.dispatchEvent(new Event('change'));
    });
    await shown(acme);
    await page.waitForTimeout(500);
    if (SCREENSHOT_DIR) {
      const first = await page.$(`iframe[name="${EMBED.frames[0].name}"]`);
      await first.screenshot({ path: path.join(SCREENSHOT_DIR, 'embedded-dashboard.png') });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'embedded-dashboards.png'), fullPage: true });
    }

    await page.goto(`http://127.0.0.1:${PAGE_PORT}/component`);
    await page.waitForFunction((count) => [...document.querySelectorAll('keyhole-dashboard')].filter((d) => d.dataset.state && d.dataset.state !== 'loading').length === count, EMBED.frames.length, { timeout: 30000 });
    for (const dashboard of await shown(page)) results.components[dashboard.id] = dashboard;
    if (SCREENSHOT_DIR) await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'embedded-components.png'), fullPage: true });

    // On an origin the keys do not list, the frame is refused: no dashboard is drawn in it.
    const other = await browser.newPage();
    await other.goto(`http://localhost:${PAGE_PORT}/iframes`);
    await other.waitForTimeout(3000);
    const blocked = other.frame({ name: EMBED.frames[0].name });
    results.other_origin = {
      url: blocked.url(),
      drawn: await blocked.evaluate(() => Boolean(document.querySelector('keyhole-dashboard'))).catch(() => false),
    };
    results.page_errors = errors;
  } finally {
    await browser.close();
    server.close();
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
