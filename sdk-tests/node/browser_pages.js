// Opens pages of sdk-tests/browser/ in headless Chromium (Debian's, through playwright-core), served from
// http://localhost:PAGE_PORT — another origin than Keyhole's — with the official browser bundles under
// /vendor/. Each page sets `window.__results`; this prints {visit name: results} as JSON and saves a
// screenshot per visit.
//
// Usage: node browser_pages.js '<visits JSON>' where visits are [{"name", "path"}] (path with its query
// string) or [{"name", "url"}] (a page served elsewhere, e.g. by Keyhole itself), optionally with a
// "referer" to arrive from and "settle_ms" to wait after the page reports. Environment: PAGE_PORT,
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium).
const fs = require('fs');
const http = require('http');
const path = require('path');
const { chromium } = require('playwright-core');

const pagesDir = path.join(__dirname, '..', 'browser');
const vendor = {
  'keen-analysis.min.js': require.resolve('keen-analysis/dist/keen-analysis.min.js'),
  'keen-dataviz.min.js': require.resolve('keen-dataviz/dist/keen-dataviz.min.js'),
  'keen-dataviz.min.css': require.resolve('keen-dataviz/dist/keen-dataviz.min.css'),
  'keen-tracking.min.js': require.resolve('keen-tracking/dist/keen-tracking.min.js'),
};
const types = { '.js': 'application/javascript', '.css': 'text/css', '.html': 'text/html; charset=utf-8' };

function serve(request, response) {
  const url = new URL(request.url, 'http://localhost');
  const name = path.basename(url.pathname);
  const file = url.pathname.startsWith('/vendor/') ? vendor[name] : path.join(pagesDir, name);
  if (!file || !fs.existsSync(file)) {
    response.writeHead(404);
    response.end();
    return;
  }
  response.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
  response.end(fs.readFileSync(file));
}

async function main() {
  const visits = JSON.parse(process.argv[2]);
  const server = http.createServer(serve);
  await new Promise((resolve) => server.listen(Number(process.env.PAGE_PORT || 0), '127.0.0.1', resolve));
  const origin = `http://localhost:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const results = {};
  try {
    for (const visit of visits) {
      const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
      const logs = [];
      page.on('console', (message) => logs.push(message.text()));
      await page.goto(visit.url || origin + visit.path, visit.referer ? { referer: visit.referer } : {});
      try {
        await page.waitForFunction(() => window.__results !== undefined, null, { timeout: 30000 });
      } catch (error) {
        throw new Error(`${visit.name}: no results (${error.message}); console: ${logs.join(' | ')}`);
      }
      // Let charts draw and fire-and-forget sends (sendBeacon, the auto-collector) leave the page.
      await page.waitForTimeout(visit.settle_ms || 300);
      results[visit.name] = await page.evaluate(() => window.__results);
      if (process.env.SCREENSHOT_DIR) {
        await page.screenshot({ path: path.join(process.env.SCREENSHOT_DIR, `${visit.name}.png`), fullPage: true });
      }
      await page.close();
    }
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
