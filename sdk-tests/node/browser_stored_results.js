// keen-analysis 3.7 (its browser bundle, unchanged) in headless Chromium against Keyhole: a page served
// from another origin than Keyhole's reads a saved query, a cached query and a cached dataset with a
// customer's key, as a dashboard would, and tries a dataset index value its key is not pinned to.
// Prints what the page got as JSON; saves a screenshot to KEYHOLE_SCREENSHOT.
//
// Environment: KEYHOLE_HOST (host:port, no scheme), KEYHOLE_PROJECT_ID, KEYHOLE_KEY, KEYHOLE_SCREENSHOT,
// CHROMIUM (default /usr/bin/chromium).
const fs = require('fs');
const http = require('http');
const { chromium } = require('playwright-core');

const { KEYHOLE_HOST, KEYHOLE_PROJECT_ID, KEYHOLE_KEY, KEYHOLE_SCREENSHOT } = process.env;
const bundle = fs.readFileSync(require.resolve('keen-analysis/dist/keen-analysis.min.js'));

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Acme's dashboard</title>
<script src="/keen-analysis.min.js"></script></head>
<body><h1>Acme's dashboard</h1><pre id="out">loading…</pre>
<script>
  const client = new KeenAnalysis({
    projectId: ${JSON.stringify(KEYHOLE_PROJECT_ID)},
    readKey: ${JSON.stringify(KEYHOLE_KEY)},
    host: ${JSON.stringify(KEYHOLE_HOST)},
    protocol: 'http',
  });
  const refused = (promise) => promise.then(
    (answer) => ({ unexpected: answer }),
    (error) => ({ status: error.status, error_code: error.error_code, message: error.body }));
  Promise.all([
    client.query('saved', 'revenue'),
    client.query({ savedQueryName: 'revenue-cached' }),
    client.query({ datasetName: 'daily-revenue', indexBy: 'acme', timeframe: 'this_7_days' }),
    refused(client.query({ datasetName: 'daily-revenue', indexBy: 'globex', timeframe: 'this_7_days' })),
  ]).then(([saved, cached, dataset, otherVendor]) => {
    window.__results = {
      saved: saved.result,
      cached: cached.result,
      cached_from_store: cached.run_information && cached.run_information.served_from_cache,
      dataset: dataset.result,
      other_vendor: otherVendor,
    };
  }, (error) => {
    window.__results = { failed: String(error && (error.body || error.message || error.error_code)) };
  }).then(() => {
    document.getElementById('out').textContent = JSON.stringify(window.__results, null, 2);
  });
</script></body></html>`;

async function main() {
  const server = http.createServer((request, response) => {
    if (request.url === '/keen-analysis.min.js') {
      response.writeHead(200, { 'content-type': 'application/javascript' });
      response.end(bundle);
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(page);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://localhost:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    const tab = await browser.newPage();
    await tab.goto(`${origin}/`);
    await tab.waitForFunction(() => window.__results !== undefined, null, { timeout: 30000 });
    const results = await tab.evaluate(() => window.__results);
    if (KEYHOLE_SCREENSHOT) {
      await tab.screenshot({ path: KEYHOLE_SCREENSHOT, fullPage: true });
    }
    process.stdout.write(JSON.stringify(results));
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
