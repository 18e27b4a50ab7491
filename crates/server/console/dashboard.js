// The dashboard page's script (see dashboard.html): keen-analysis queries with the key from the URL's
// fragment, drawn with keen-dataviz; a refusal (revoked key, wrong origin, …) is shown as Keyhole words it.
// The fragment says what to show: `collection` (required), `unique` (a property whose distinct values are
// counted) and `group_by` (a property to break down by), both optional, `interval` (default daily) and
// `timeframe` (default this_30_days). The console's key list builds it.
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
  const collection = params.get('collection');
  if (!collection) {
    const message = 'Which collection? Open this dashboard from the console\'s key list, or add &collection=… to the address.';
    document.getElementById('error').textContent = message;
    window.__results = { error_code: 'NoCollection', message };
    return;
  }
  const unique = params.get('unique');
  const groupBy = params.get('group_by');
  const interval = params.get('interval') || 'daily';
  const timeframe = params.get('timeframe') || 'this_30_days';
  document.getElementById('title').textContent = `${params.get('vendor') || 'Your'} dashboard: ${collection}`;
  // `this_30_days` reads "last 30 days"; `daily` reads "Per day", `every_7_days` "Every 7 days".
  const thisN = /^this_(\d+)_(\w+)$/.exec(timeframe);
  document.getElementById('total-label').textContent = `Events, ${thisN ? `last ${thisN[1]} ${thisN[2]}` : timeframe.replace(/_/g, ' ')}`;
  const PER = { minutely: 'minute', hourly: 'hour', daily: 'day', weekly: 'week', monthly: 'month', yearly: 'year' };
  const intervalTitle = PER[interval] ? `Per ${PER[interval]}` : `Every ${interval.replace(/^every_/, '').replace(/_/g, ' ')}`;
  if (unique) document.getElementById('users-label').textContent = `Distinct ${unique}`;
  else document.getElementById('users-figure').hidden = true;
  if (!groupBy) document.getElementById('by-kind').hidden = true;
  const client = new KeenAnalysis({
    projectId: params.get('project'),
    readKey: params.get('key'),
    host: params.get('host') || location.host,
    protocol: location.protocol.replace(':', ''),
  });
  const scope = { eventCollection: collection, timeframe, timezone: 'UTC' };
  const daily = new KeenDataviz({ container: '#daily', title: intervalTitle, type: 'area' });
  const byKind = groupBy ? new KeenDataviz({ container: '#by-kind', title: `By ${groupBy}`, type: 'bar' }) : null;
  const none = Promise.resolve(null);
  Promise.all([
    client.query({ analysisType: 'count', ...scope }),
    unique ? client.query({ analysisType: 'count_unique', targetProperty: unique, ...scope }) : none,
    client.query({ analysisType: 'count', interval, ...scope }),
    groupBy ? client.query({ analysisType: 'count', groupBy, ...scope }) : none,
  ]).then(([total, users, perInterval, perKind]) => {
    document.getElementById('total').textContent = total.result;
    if (users) document.getElementById('users').textContent = users.result;
    daily.render(perInterval);
    if (perKind) byKind.render(perKind);
    window.__results = {
      total: total.result,
      users: users && users.result,
      daily: perInterval.result,
      by_kind: perKind && perKind.result,
    };
  }, (error) => {
    const message = error.body || error.message || String(error);
    document.getElementById('error').textContent = error.error_code ? `${error.error_code}: ${message}` : message;
    window.__results = { status: error.status, error_code: error.error_code, message };
  });
})();
