// <keyhole-dashboard project="…" dashboard="…" token="…" host="https://keyhole.example"> draws a dashboard
// stored in Keyhole (PUT /3.0/projects/{p}/dashboards/{name}) in a shadow root, with the credential it is
// given: an embed token (or an access key) that may run queries, and saved queries for saved-query tiles.
// It reads the definition (GET …/dashboards/{name}/view), then runs each tile's query with the same
// credential, so every tile shows only what the credential may see; a tile it may not run says so on its
// own. An expired or revoked credential shows "This link has expired". The embed page (embed-page.js) is
// this element filling a page. `kid` (optional) names the key the credential must come from; a token of
// another key is refused. State for tests and hosts: the element's data-state (loading, ready, expired,
// unavailable, error) and each tile's data-state (ready, not-permitted, error) and data-result.
(() => {
  if (customElements.get('keyhole-dashboard')) return;
  const SCRIPT_ORIGIN = document.currentScript ? new URL(document.currentScript.src).origin : location.origin;
  const CHARTS = { metric: 'metric', line: 'line', area: 'area', bar: 'bar', pie: 'pie', table: 'table', funnel: 'funnel' };
  const THEME = { font: '--keyhole-font', color: '--keyhole-color', background: '--keyhole-background', accent: '--keyhole-accent', tile_background: '--keyhole-tile-background' };
  const STYLE = `
    :host { display: block; font-family: var(--keyhole-font, system-ui, sans-serif); color: var(--keyhole-color, #1d2433);
            background: var(--keyhole-background, #f7f8fa); padding: 16px; box-sizing: border-box; }
    h1 { font-size: 20px; margin: 0 0 12px; }
    .controls { display: flex; gap: 12px; margin-bottom: 12px; font-size: 14px; }
    .grid { display: grid; grid-template-columns: repeat(12, 1fr); gap: 12px; align-items: start; }
    .tile { background: var(--keyhole-tile-background, #fff); border-radius: 6px; padding: 12px; min-height: 120px;
            box-shadow: 0 1px 2px rgba(0,0,0,0.08); overflow: hidden; }
    .tile h2 { font-size: 14px; margin: 0 0 8px; color: var(--keyhole-accent, #0b6bcb); }
    .figure { font-size: 36px; font-weight: 700; }
    .message, .panel { color: #56607a; font-size: 14px; }
    .panel { padding: 32px; text-align: center; font-size: 16px; background: var(--keyhole-tile-background, #fff); border-radius: 6px; }
    table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #d5dae3; padding: 2px 6px; }`;

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  // The kid in a token's header, or null for an access key (no dots) or an unreadable token.
  function tokenKid(credential) {
    const [header] = credential.split('.');
    if (!credential.includes('.') || !header) return null;
    try {
      return JSON.parse(atob(header.replace(/-/g, '+').replace(/_/g, '/'))).kid || null;
    } catch (_) {
      return undefined;
    }
  }

  let chartLibrary;
  function loadCharts(host) {
    if (window.KeenDataviz) return Promise.resolve();
    if (!chartLibrary) {
      chartLibrary = new Promise((resolve) => {
        const script = element('script', { src: `${host}/embed/keen-dataviz.min.js` });
        script.onload = resolve;
        script.onerror = resolve; // without the library, tiles fall back to figures and tables
        document.head.append(script);
      });
    }
    return chartLibrary;
  }

  // A result the chart library cannot draw, as a figure or a table.
  function plainResult(result) {
    if (typeof result === 'number' || typeof result === 'string') return element('div', { class: 'figure' }, result);
    const rows = Array.isArray(result) ? result : [result];
    const columns = [...new Set(rows.flatMap((row) => (row && typeof row === 'object' ? Object.keys(row) : ['value'])))];
    const text = (value) => (typeof value === 'object' ? JSON.stringify(value) : String(value));
    return element('table', {}, element('tr', {}, ...columns.map((column) => element('th', {}, column))),
      ...rows.map((row) => element('tr', {}, ...columns.map((column) => element('td', {}, text(row && typeof row === 'object' ? row[column] : row))))));
  }

  class KeyholeDashboard extends HTMLElement {
    static get observedAttributes() { return ['project', 'dashboard', 'token', 'host', 'kid']; }

    connectedCallback() { this.scheduleDraw(); }

    attributeChangedCallback() { if (this.isConnected) this.scheduleDraw(); }

    scheduleDraw() {
      clearTimeout(this.pending);
      this.pending = setTimeout(() => this.draw(), 0);
    }

    get host() { return (this.getAttribute('host') || SCRIPT_ORIGIN).replace(/\/$/, ''); }

    request(method, path, body) {
      const project = encodeURIComponent(this.getAttribute('project') || '');
      return fetch(`${this.host}/3.0/projects/${project}${path}`, {
        method,
        headers: { Authorization: this.getAttribute('token') || '', ...(body ? { 'Content-Type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      }).then(async (response) => ({ status: response.status, body: await response.json().catch(() => ({})) }));
    }

    panel(state, message) {
      this.dataset.state = state;
      this.root.replaceChildren(this.sheet, element('div', { class: 'panel', part: 'panel', id: state }, message));
    }

    async draw() {
      this.root = this.shadowRoot || this.attachShadow({ mode: 'open' });
      this.sheet = element('style', {}, STYLE);
      this.dataset.state = 'loading';
      this.root.replaceChildren(this.sheet, element('link', { rel: 'stylesheet', href: `${this.host}/embed/keen-dataviz.min.css` }));
      const token = this.getAttribute('token') || '';
      const kid = this.getAttribute('kid');
      if (!token) return this.panel('expired', 'This link has expired or is not complete. Ask for a new one.');
      if (kid && tokenKid(token) !== null && tokenKid(token) !== kid) {
        return this.panel('error', 'This link is not valid for this dashboard.');
      }
      const name = encodeURIComponent(this.getAttribute('dashboard') || '');
      const view = await this.request('GET', `/dashboards/${name}/view`).catch(() => ({ status: 0, body: {} }));
      if (view.status === 401) return this.panel('expired', 'This link has expired. Ask for a new one.');
      if (view.status === 403 && view.body.error_code === 'TenantSuspendedError') return this.panel('unavailable', 'This dashboard is unavailable.');
      if (view.status !== 200) return this.panel('error', view.status === 404 ? 'There is no such dashboard.' : 'The dashboard could not be loaded.');
      this.definition = view.body;
      await loadCharts(this.host);
      this.layout();
    }

    layout() {
      const definition = this.definition;
      const themed = Object.entries(definition.theme || {}).filter(([field]) => THEME[field]).map(([field, value]) => `${THEME[field]}: ${value};`).join(' ');
      const theme = element('style', {}, `:host { ${themed} }`);
      const controls = element('div', { class: 'controls', part: 'controls' });
      this.choices = {};
      for (const [field, label] of [['timeframes', 'timeframe'], ['intervals', 'interval']]) {
        const values = (definition.controls && definition.controls[field]) || [];
        if (!values.length) continue;
        const select = element('select', { name: label }, element('option', { value: '' }, `${label}: as defined`), ...values.map((value) => element('option', { value }, value)));
        select.addEventListener('change', () => { this.choices[label] = select.value; this.runTiles(); });
        controls.append(element('label', {}, select));
      }
      this.grid = element('div', { class: 'grid', part: 'grid' });
      this.root.replaceChildren(this.sheet, element('link', { rel: 'stylesheet', href: `${this.host}/embed/keen-dataviz.min.css` }), theme,
        element('h1', { part: 'title' }, definition.title), controls, this.grid);
      this.runTiles();
    }

    async runTiles() {
      this.dataset.state = 'loading';
      const tiles = this.definition.tiles.map((tile, index) => {
        const node = element('div', { class: 'tile', part: 'tile', 'data-tile': index, style: `grid-column: span ${tile.width}` }, element('h2', {}, tile.title));
        return { tile, node };
      });
      this.grid.replaceChildren(...tiles.map(({ node }) => node));
      await Promise.all(tiles.map(({ tile, node }) => this.runTile(tile, node)));
      this.dataset.state = 'ready';
    }

    async runTile(tile, node) {
      let answer;
      if (tile.saved_query) {
        answer = await this.request('GET', `/queries/saved/${encodeURIComponent(tile.saved_query)}/result`);
      } else {
        const { analysis_type: analysis, ...body } = tile.query;
        if (this.choices.timeframe) body.timeframe = this.choices.timeframe;
        if (this.choices.interval && body.interval) body.interval = this.choices.interval;
        answer = await this.request('POST', `/queries/${encodeURIComponent(analysis)}`, body);
      }
      const say = (state, message) => { node.dataset.state = state; node.append(element('p', { class: 'message' }, message)); };
      if (answer.status === 401 || answer.status === 403) return say('not-permitted', 'Not permitted with this link.');
      if (answer.status !== 200) return say('error', 'This tile could not be loaded.');
      node.dataset.state = 'ready';
      node.dataset.result = JSON.stringify(answer.body.result);
      const chart = element('div', { class: 'chart' });
      node.append(chart);
      try {
        if (!window.KeenDataviz) throw new Error('no chart library');
        new window.KeenDataviz({ container: chart, type: CHARTS[tile.chart], title: false, showTitle: false }).render(answer.body);
      } catch (_) {
        chart.replaceChildren(plainResult(answer.body.result));
      }
    }
  }

  customElements.define('keyhole-dashboard', KeyholeDashboard);
})();
