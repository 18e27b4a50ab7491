// The dashboard page's script (see dashboard.html): four keen-analysis queries with the key from the URL's
// fragment, drawn with keen-dataviz; a refusal (revoked key, wrong origin, …) is shown as Keyhole words it.
// The key is read from the fragment (#key=…), which browsers never send to a server nor put in a Referer;
// a key in the query string (?key=…) would land in server and proxy logs, so it is refused and wiped from
// the address bar.
(() => {
  const params = new URLSearchParams(location.hash.slice(1));
  if (new URLSearchParams(location.search).has('key')) {
    history.replaceState(null, '', location.pathname + location.hash);
    const message = 'The key belongs in the URL fragment (dashboard.html#project=…&key=…), never in its query string.';
    document.getElementById('error').textContent = message;
    window.__results = { error_code: 'KeyInQueryString', message };
    return;
  }
  if (typeof KeenAnalysis === 'undefined' || typeof KeenDataviz === 'undefined') {
    const message = 'This Keyhole build lacks keen-analysis and keen-dataviz: run scripts/install-assets, then build again.';
    document.getElementById('error').textContent = message;
    window.__results = { error_code: 'AssetsNotInstalled', message };
    return;
  }
  const collection = params.get('collection') || 'orders';
  const groupBy = params.get('group_by') || 'product.category';
  document.getElementById('title').textContent = `${params.get('vendor') || 'Your'} dashboard`;
  const client = new KeenAnalysis({
    projectId: params.get('project'),
    readKey: params.get('key'),
    host: params.get('host') || location.host,
    protocol: location.protocol.replace(':', ''),
  });
  const scope = { eventCollection: collection, timeframe: 'this_30_days', timezone: 'UTC' };
  const daily = new KeenDataviz({ container: '#daily', title: 'Per day', type: 'area' });
  const byKind = new KeenDataviz({ container: '#by-kind', title: `By ${groupBy}`, type: 'bar' });
  Promise.all([
    client.query({ analysisType: 'count', ...scope }),
    client.query({ analysisType: 'count_unique', targetProperty: 'user.id', ...scope }),
    client.query({ analysisType: 'count', interval: 'daily', ...scope }),
    client.query({ analysisType: 'count', groupBy, ...scope }),
  ]).then(([total, users, perDay, perKind]) => {
    document.getElementById('total').textContent = total.result;
    document.getElementById('users').textContent = users.result;
    daily.render(perDay);
    byKind.render(perKind);
    window.__results = { total: total.result, users: users.result, daily: perDay.result, by_kind: perKind.result };
  }, (error) => {
    const message = error.body || error.message || String(error);
    document.getElementById('error').textContent = error.error_code ? `${error.error_code}: ${message}` : message;
    window.__results = { status: error.status, error_code: error.error_code, message };
  });
})();
