// Keyhole's web console (see index.html). A client of the public API: every action is one documented
// request, signed with the key the user typed, which lives in `session` only (this tab's memory).
(() => {
  const session = { orgKey: null, masterKey: null, project: null, secrets: {}, collections: [], timeDisplay: 'utc' };
  const $ = (selector) => document.querySelector(selector);
  // The names the forms offer (analyses, operators, intervals, operations, add-ons) come from the server,
  // which takes them from the types that parse them: GET vocabulary.json, once, before any view is drawn.
  const VOCABULARY = { analyses: [], operators: [], intervals: [], operations: [], addons: [] };
  const vocabularyLoaded = fetch('vocabulary.json')
    .then((response) => response.json())
    .then((vocabulary) => Object.assign(VOCABULARY, vocabulary));
  // What this server is set up with (GET server.json): whether keen:ip_to_geo has a database.
  const serverStatusLoaded = fetch('server.json').then((response) => response.json());
  const ORIGIN = /^https?:\/\/(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:\d{1,5})?$/i;

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else if (value !== false && value !== undefined) node.setAttribute(name, value === true ? '' : value);
    }
    for (const child of children.flat()) node.append(child instanceof Node ? child : String(child ?? ''));
    return node;
  }

  function notify(message, isError = false) {
    $('#notice').textContent = message;
    $('#notice').className = isError ? 'error' : '';
  }

  // One API call; resolves with the parsed body (or null for 204), rejects with Keyhole's message.
  async function api(method, path, { key = session.masterKey, body } = {}) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: key, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Error(parsed && parsed.error_code ? `${parsed.error_code}: ${parsed.message}` : `HTTP ${response.status}`);
    return parsed;
  }
  const projectPath = (rest) => `/3.0/projects/${encodeURIComponent(session.project.id)}${rest}`;
  const guarded = (work) => async (...args) => {
    try { notify(''); await work(...args); } catch (error) { notify(error.message, true); }
  };

  function table(rows, columns) {
    if (!rows.length) return element('p', {}, 'Nothing yet.');
    return element('table', {},
      element('tr', {}, columns.map((column) => element('th', {}, column.title))),
      rows.map((row) => element('tr', {}, columns.map((column) => element('td', {}, column.cell(row))))));
  }

  // ---------- sign-in ----------
  async function signIn(event) {
    event.preventDefault();
    const key = $('#sign-in-key').value.trim();
    $('#sign-in-key').value = '';
    // A key is tried as a project's master key, then as the organization key; a refusal says both.
    let asMaster;
    try {
      const projects = await api('GET', '/3.0/projects', { key });
      session.masterKey = key;
      session.project = projects[0];
    } catch (error) {
      asMaster = error;
    }
    if (!session.masterKey) {
      try {
        await api('GET', '/3.0/organizations/default/projects', { key });
        session.orgKey = key;
      } catch (asOrganization) {
        throw new Error('Sign-in failed. The key was tried as a project\'s master key — ' + asMaster.message
          + ' — and as the organization key — ' + asOrganization.message
          + '. Paste a master key or the organization key that keyhole serve printed on its first start.');
      }
    }
    $('#sign-in').hidden = true;
    $('#main').hidden = false;
    $('#sign-out').hidden = false;
    updateWho();
    show(session.project ? 'collections' : 'projects');
  }

  function updateWho() {
    const who = session.orgKey ? 'organization key' : 'master key';
    $('#who').textContent = session.project ? `${who} · project ${session.project.name} (${session.project.id})` : who;
    for (const button of document.querySelectorAll('[data-needs-project]')) button.disabled = !session.project;
  }

  // Resolves once the view is drawn, so a notice set after it stays and describes what is shown.
  function show(view) {
    for (const button of document.querySelectorAll('#tabs button')) button.classList.toggle('active', button.dataset.view === view);
    $('#view').replaceChildren();
    return guarded(async () => { await vocabularyLoaded; await VIEWS[view](); })();
  }

  // ---------- projects ----------
  async function projectsView() {
    const view = $('#view');
    if (!session.orgKey) {
      view.append(element('p', {}, `Signed in with the master key of ${session.project.name}. Sign in with the organization key to list and create projects.`));
      return;
    }
    const projects = await api('GET', '/3.0/organizations/default/projects', { key: session.orgKey });
    const open = (project) => element('form', {
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const key = event.target.elements.master.value.trim();
        const [own] = await api('GET', '/3.0/projects', { key });
        if (!own || own.id !== project.id) throw new Error('That is not this project\'s master key.');
        Object.assign(session, { masterKey: key, project: own });
        updateWho();
        show('collections');
      }),
    }, element('input', { name: 'master', type: 'password', placeholder: 'master key', required: true, autocomplete: 'off' }), element('button', {}, 'Open'));
    view.append(element('h2', {}, 'Projects'), table(projects, [
      { title: 'name', cell: (project) => project.name },
      { title: 'id', cell: (project) => project.id },
      { title: 'created', cell: (project) => project.created_at },
      { title: 'open with its master key', cell: open },
    ]));
    view.append(element('h3', {}, 'Create a project'), element('form', {
      id: 'create-project',
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const created = await api('POST', '/3.0/organizations/default/projects', { key: session.orgKey, body: { name: event.target.elements.name.value.trim() } });
        Object.assign(session, { masterKey: created.api_keys.master, project: { id: created.id, name: created.name } });
        updateWho();
        show('projects');
        notify(`Project created. Its keys are shown this once — master ${created.api_keys.master}, write ${created.api_keys.write}, read ${created.api_keys.read}`);
      }),
    }, element('input', { name: 'name', required: true, placeholder: 'name' }), element('button', {}, 'Create')));
  }

  // ---------- collections ----------
  async function collectionsView() {
    const collections = await api('GET', projectPath('/events'));
    const view = $('#view');
    const status = await serverStatusLoaded;
    if (!status.ip_to_geo.enabled) {
      view.append(element('p', { id: 'geo-off', class: 'advice' },
        'Geo enrichment (keen:ip_to_geo) is off: events that ask for it — every pageview of keen-tracking\'s auto-collector — are stored without their geo property. ',
        status.ip_to_geo.how_to_enable));
    }
    view.append(element('h2', {}, 'Collections'));
    if (!collections.length) view.append(element('p', {}, 'No events yet.'));
    const counts = await Promise.all(collections.map((collection) =>
      api('POST', projectPath('/queries/count'), { body: { event_collection: collection.name } })
        .then((answer) => answer.result, () => '?')));
    collections.forEach((collection, index) => {
      const properties = Object.entries(collection.properties).map(([name, type]) => ({ name, type }));
      const count = counts[index];
      view.append(element('h3', {}, collection.name),
        element('p', { class: 'event-count', 'data-collection': collection.name }, `${count} event${count === 1 ? '' : 's'}`),
        table(properties, [
        { title: 'property', cell: (property) => property.name },
        { title: 'type', cell: (property) => property.type },
      ]));
    });
  }

  // ---------- results: a chart (keen-dataviz) and the answer as a table ----------
  function renderResult(container, answer, title) {
    container.replaceChildren();
    const chartNode = element('div', { class: 'chart' });
    container.append(chartNode);
    if (typeof KeenDataviz === 'undefined') {
      chartNode.replaceWith(element('p', { class: 'notice' },
        'No chart: this Keyhole build lacks keen-dataviz (run scripts/install-assets, then build again).'));
    } else {
      try {
        new KeenDataviz({ container: chartNode, title }).render(answer);
      } catch (_) {
        chartNode.remove();
      }
    }
    const result = answer.result;
    const raw = element('div', { class: 'raw-result' });
    const zone = element('select', { name: 'time-zone', onchange: () => { session.timeDisplay = zone.value; drawRaw(); } },
      element('option', { value: 'utc', selected: session.timeDisplay !== 'browser' }, 'UTC'),
      element('option', { value: 'browser', selected: session.timeDisplay === 'browser' }, `this browser's zone (${BROWSER_ZONE})`));
    const drawRaw = () => {
      const shown = showTimes(result);
      if (Array.isArray(shown) && shown.length && typeof shown[0] === 'object' && shown[0] !== null) {
        const columns = [...new Set(shown.flatMap((row) => Object.keys(row)))];
        const text = (value) => (typeof value === 'string' ? value : JSON.stringify(value));
        raw.replaceChildren(table(shown, columns.map((column) => ({ title: column, cell: (row) => text(row[column]) }))));
      } else {
        raw.replaceChildren(element('pre', {}, JSON.stringify(shown, null, 2)));
      }
    };
    container.append(element('label', { class: 'time-zone' }, 'times in ', zone), raw);
    drawRaw();
  }

  // Times in answers are UTC instants (2026-12-07T10:00:00.000Z); the tables show them in UTC or, when
  // asked, in the browser's zone with its offset (2026-12-07T11:00:00.000+01:00).
  const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
  const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
  function inBrowserZone(text) {
    const date = new Date(text);
    const pad = (number, width = 2) => String(Math.abs(number)).padStart(width, '0');
    const offset = -date.getTimezoneOffset();
    const sign = offset < 0 ? '-' : '+';
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  }
  function showTimes(value) {
    if (session.timeDisplay !== 'browser') return value;
    if (typeof value === 'string') return INSTANT.test(value) ? inBrowserZone(value) : value;
    if (Array.isArray(value)) return value.map(showTimes);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, showTimes(inner)]));
    return value;
  }

  // ---------- explorer ----------
  function filterRow(filter = {}) {
    const row = element('div', { class: 'row filter' },
      element('input', { name: 'property', placeholder: 'property', value: filter.property_name || '' }),
      element('select', { name: 'operator' }, VOCABULARY.operators.map((operator) => element('option', { selected: operator === filter.operator }, operator))),
      element('input', { name: 'value', placeholder: 'value (JSON or text)', value: filter.property_value === undefined ? '' : JSON.stringify(filter.property_value) }),
      element('button', { type: 'button', onclick: () => row.remove() }, 'remove'));
    return row;
  }

  // The filters of a form, parsed and checked: a value is read as JSON when it parses, else as text.
  function filtersOf(container) {
    return [...container.querySelectorAll('.filter')].map((row) => {
      const property = row.querySelector('[name=property]').value.trim();
      const operator = row.querySelector('[name=operator]').value;
      const text = row.querySelector('[name=value]').value.trim();
      if (!property) throw new Error('Every filter needs a property.');
      if (!text) throw new Error(`The filter on ${property} needs a value.`);
      let value;
      try { value = JSON.parse(text); } catch (_) { value = text; }
      if (operator === 'in' && !Array.isArray(value)) value = String(text).split(',').map((item) => item.trim());
      if (operator === 'exists' && typeof value !== 'boolean') throw new Error(`exists takes true or false (${property}).`);
      return { property_name: property, operator, property_value: value };
    });
  }

  // Every interval Keen has: the named ones, and every_N_<unit> typed (the list suggests some).
  function intervalInput(value) {
    const units = ['minutes', 'hours', 'days', 'weeks', 'months', 'years'];
    const suggestions = [...VOCABULARY.intervals, ...units.map((unit) => `every_2_${unit}`), 'every_7_days'];
    const list = element('datalist', { id: `intervals-${Math.random().toString(36).slice(2)}` },
      suggestions.map((interval) => element('option', { value: interval })));
    return element('span', {}, element('input', { name: 'interval', list: list.id, value, placeholder: 'none, daily, every_7_days…', size: 14 }), list);
  }

  function explorerView() {
    const filters = element('div');
    const output = element('div');
    const json = element('textarea', { rows: 8, placeholder: '{"event_collection": "…", "steps": […]} — for funnel and multi_analysis, or anything else' });
    const form = element('form', {
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const fields = form.elements;
        const analysis = fields.analysis.value;
        let body;
        if (json.value.trim()) {
          body = JSON.parse(json.value);
        } else {
          body = { event_collection: fields.collection.value.trim(), timeframe: fields.timeframe.value.trim(), timezone: fields.timezone.value.trim() || 'UTC', filters: filtersOf(filters) };
          if (fields.target.value.trim()) body.target_property = fields.target.value.trim();
          if (fields.group_by.value.trim()) body.group_by = fields.group_by.value.split(',').map((name) => name.trim());
          if (fields.interval.value.trim()) body.interval = fields.interval.value.trim();
          if (analysis === 'percentile') body.percentile = Number(fields.percentile.value || 50);
        }
        const answer = await api('POST', projectPath(`/queries/${analysis}`), { body });
        // The dashboard editor offers the last query run here as a tile (dashboards.js).
        session.lastQuery = { analysis_type: analysis, ...body };
        renderResult(output, answer, `${analysis} ${body.event_collection || ''}`);
      }),
    },
    element('div', { class: 'row' },
      element('label', {}, 'analysis', element('select', { name: 'analysis' }, VOCABULARY.analyses.map((analysis) => element('option', {}, analysis)))),
      element('label', {}, 'collection', element('input', { name: 'collection' })),
      element('label', {}, 'target property', element('input', { name: 'target' })),
      element('label', {}, 'percentile', element('input', { name: 'percentile', type: 'number', min: 0, max: 100, value: 50, size: 4 }))),
    element('div', { class: 'row' },
      element('label', {}, 'timeframe', element('input', { name: 'timeframe', value: 'this_14_days' })),
      element('label', {}, 'interval', intervalInput('')),
      element('label', {}, 'timezone', element('input', { name: 'timezone', value: 'UTC' })),
      element('label', {}, 'group_by', element('input', { name: 'group_by', placeholder: 'a, b' }))),
    element('fieldset', {}, element('legend', {}, 'filters'), filters, element('button', { type: 'button', onclick: () => filters.append(filterRow()) }, 'add filter')),
    element('details', {}, element('summary', {}, 'Query as JSON instead'), json),
    element('button', { type: 'submit' }, 'Run'));
    $('#view').append(element('h2', {}, 'Explorer'), form, output);
  }

  // ---------- keys ----------
  function pairRow(path = '', value = '') {
    const row = element('div', { class: 'row autofill' },
      element('input', { name: 'path', placeholder: 'property (a.b)', value: path }),
      element('input', { name: 'value', placeholder: 'value (JSON or text)', value }),
      element('button', { type: 'button', onclick: () => row.remove() }, 'remove'));
    return row;
  }

  // The key definition a form describes; refuses what would not be a valid key before sending it.
  function definitionOf(form, filters, autofill) {
    const name = form.elements.name.value.trim();
    if (!name) throw new Error('A key needs a name.');
    const permitted = VOCABULARY.operations.filter((operation) => form.elements[operation].checked);
    if (!permitted.length) throw new Error('A key needs at least one permitted operation.');
    const options = {};
    const queryFilters = filtersOf(filters);
    if (queryFilters.length) options.queries = { filters: queryFilters };
    const fill = {};
    for (const row of autofill.querySelectorAll('.autofill')) {
      const path = row.querySelector('[name=path]').value.trim();
      const text = row.querySelector('[name=value]').value.trim();
      if (!path || path.split('.').some((part) => !part) || path.startsWith('keen')) throw new Error(`'${path}' cannot be an autofill property.`);
      let value;
      try { value = JSON.parse(text); } catch (_) { value = text; }
      const parts = path.split('.');
      let target = fill;
      for (const part of parts.slice(0, -1)) target = target[part] = target[part] || {};
      target[parts[parts.length - 1]] = value;
    }
    if (Object.keys(fill).length) options.writes = { autofill: fill };
    const origins = form.elements.origins.value.split(/\s+/).filter(Boolean);
    const badOrigin = origins.find((origin) => !ORIGIN.test(origin));
    if (badOrigin) throw new Error(`'${badOrigin}' is not an origin such as https://app.example.com or https://*.example.com.`);
    if (origins.length) options.origins = origins;
    const definition = { name, permitted, options };
    if (form.elements.expires.value) definition.expires_at = new Date(form.elements.expires.value).toISOString();
    return definition;
  }

  // An ISO instant as a datetime-local input's value (local time, minutes); '' for none.
  function localDateTime(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    const pad = (number) => String(number).padStart(2, '0');
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  function keyForm(existing, onSaved) {
    const filters = element('div');
    const autofill = element('div');
    const options = (existing && existing.options) || {};
    for (const filter of (options.queries && options.queries.filters) || []) filters.append(filterRow(filter));
    const flatten = (object, prefix = '') => Object.entries(object || {}).flatMap(([name, value]) =>
      value && typeof value === 'object' && !Array.isArray(value) ? flatten(value, `${prefix}${name}.`) : [[`${prefix}${name}`, JSON.stringify(value)]]);
    for (const [path, value] of flatten(options.writes && options.writes.autofill)) autofill.append(pairRow(path, value));
    const form = element('form', {
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const definition = definitionOf(form, filters, autofill);
        const saved = existing
          ? await api('POST', projectPath(`/keys/${encodeURIComponent(existing.key)}`), { body: definition })
          : await api('POST', projectPath('/keys'), { body: definition });
        session.secrets[saved.key_prefix] = saved.key;
        await onSaved(saved, !existing);
      }),
    },
    element('div', { class: 'row' }, element('label', {}, 'name', element('input', { name: 'name', value: existing ? existing.name : '', required: true })),
      element('label', {}, 'expires', element('input', { name: 'expires', type: 'datetime-local', value: localDateTime(existing && existing.expires_at) }))),
    element('fieldset', {}, element('legend', {}, 'permitted'), VOCABULARY.operations.map((operation) =>
      element('label', {}, element('input', { type: 'checkbox', name: operation, checked: existing ? existing.permitted.includes(operation) : operation === 'queries' }), operation))),
    element('fieldset', {}, element('legend', {}, 'filters AND-ed into every read'), filters, element('button', { type: 'button', onclick: () => filters.append(filterRow()) }, 'add filter')),
    element('fieldset', {}, element('legend', {}, 'autofill stamped onto every write'), autofill, element('button', { type: 'button', onclick: () => autofill.append(pairRow()) }, 'add property')),
    element('fieldset', {}, element('legend', {}, 'origins it may be used from (one per line; empty: any)'),
      element('textarea', { name: 'origins', rows: 2 }, ((options.origins) || []).join('\n'))),
    element('button', { type: 'submit' }, existing ? 'Save' : 'Create key'));
    return form;
  }

  // What a key's dashboard shows, chosen by the user: any collection (the project's are suggested, any name
  // may be typed), the property whose distinct values it counts and the one it breaks down by (both
  // optional), the interval and the timeframe. The link opens dashboard.html with the choice in its fragment.
  function dashboardLink(secret) {
    const collections = session.collections || [];
    const listId = (name) => `dashboard-${name}-${Math.random().toString(36).slice(2)}`;
    const collectionList = element('datalist', { id: listId('collections') }, collections.map((collection) => element('option', { value: collection.name })));
    const propertyNames = [...new Set(collections.flatMap((collection) => Object.keys(collection.properties)))].sort();
    const propertyList = element('datalist', { id: listId('properties') }, propertyNames.map((name) => element('option', { value: name })));
    const input = (name, value, list, placeholder) => element('input', { name, value, list, placeholder, size: 16 });
    const fields = {
      collection: input('collection', collections.length ? collections[0].name : '', collectionList.id, 'collection'),
      unique: input('unique', '', propertyList.id, 'count unique (optional)'),
      group_by: input('group_by', '', propertyList.id, 'break down by (optional)'),
      interval: intervalInput('daily').querySelector('input'),
      timeframe: input('timeframe', 'this_30_days', undefined, 'timeframe'),
    };
    const link = element('a', { target: '_blank', rel: 'noopener', class: 'dashboard-link' }, 'open dashboard');
    const update = () => {
      const query = new URLSearchParams({ project: session.project.id, key: secret, vendor: 'Customer' });
      for (const [name, field] of Object.entries(fields)) if (field.value.trim()) query.set(name, field.value.trim());
      link.href = `dashboard.html#${query}`;
    };
    const intervals = fields.interval.parentNode;
    const labelled = (text, field) => element('label', {}, text, field);
    const chooser = element('span', { class: 'row dashboard-chooser', oninput: update },
      labelled('collection', fields.collection), labelled('distinct', fields.unique), labelled('by', fields.group_by),
      labelled('interval', intervals), labelled('timeframe', fields.timeframe), collectionList, propertyList, link);
    update();
    return chooser;
  }

  async function keysView() {
    const view = $('#view');
    const keys = await api('GET', projectPath('/keys'));
    session.collections = await api('GET', projectPath('/events'));
    const action = (label, work, className) => element('button', { type: 'button', class: className, onclick: guarded(work) }, label);
    const actions = (key) => {
      const secret = session.secrets[key.key_prefix];
      if (!secret) return element('span', {}, 'paste its secret below to manage it');
      const path = projectPath(`/keys/${encodeURIComponent(secret)}`);
      return element('span', { class: 'row' },
        action('edit', async () => {
          const current = await api('GET', path);
          view.replaceChildren(element('h2', {}, `Edit ${current.name}`), keyForm(current, async () => { await show('keys'); notify('Key saved.'); }));
        }),
        key.is_active
          ? action('revoke', async () => { await api('POST', `${path}/revoke`); await show('keys'); notify(`Revoked ${key.name}.`); }, 'danger')
          : action('unrevoke', async () => { await api('POST', `${path}/unrevoke`); await show('keys'); notify(`Unrevoked ${key.name}.`); }),
        action('delete', async () => {
          if (!confirm(`Delete ${key.name}? Pages using it stop working.`)) return;
          await api('DELETE', path);
          delete session.secrets[key.key_prefix];
          show('keys');
          notify(`Deleted ${key.name}.`);
        }, 'danger'),
        element('details', { class: 'dashboard' }, element('summary', {}, 'dashboard'), dashboardLink(secret)));
    };
    view.append(element('h2', {}, 'Access keys'), table(keys, [
      { title: 'name', cell: (key) => key.name },
      { title: 'prefix', cell: (key) => key.key_prefix },
      { title: 'permitted', cell: (key) => key.permitted.join(', ') },
      { title: 'filters', cell: (key) => JSON.stringify(((key.options || {}).queries || {}).filters || []) },
      { title: 'active', cell: (key) => (key.is_active ? 'yes' : 'revoked') },
      { title: 'expires', cell: (key) => key.expires_at || '' },
      { title: '', cell: actions },
    ]));
    view.append(element('form', {
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const secret = event.target.elements.secret.value.trim();
        const key = await api('GET', projectPath(`/keys/${encodeURIComponent(secret)}`));
        session.secrets[key.key_prefix] = secret;
        show('keys');
      }),
    }, element('label', {}, 'Manage a key by its secret (Keen addresses keys by secret)', element('input', { name: 'secret', type: 'password', autocomplete: 'off', size: 70 })), element('button', {}, 'Manage')));
    view.append(element('h3', {}, 'Create an access key'), keyForm(null, async (saved) => {
      await show('keys');
      const shown = element('span', {}, 'Key created. Its secret is shown this once: ', element('span', { class: 'secret', id: 'new-secret' }, saved.key), ' ', dashboardLink(saved.key));
      $('#notice').replaceChildren(shown);
    }));
  }

  // ---------- saved queries and datasets ----------
  async function storedView() {
    const view = $('#view');
    const output = element('div');
    const saved = await api('GET', projectPath('/queries/saved'));
    const datasets = (await api('GET', projectPath('/datasets?limit=100'))).datasets;
    view.append(element('h2', {}, 'Saved and cached queries'), table(saved, [
      { title: 'name', cell: (query) => query.query_name },
      { title: 'analysis', cell: (query) => `${query.query.analysis_type} ${query.query.event_collection || ''}` },
      { title: 'refresh', cell: (query) => (query.refresh_rate ? `${query.refresh_rate / 3600} h` : 'live') },
      { title: '', cell: (query) => element('button', { type: 'button', onclick: guarded(async () => {
        const answer = await api('GET', projectPath(`/queries/saved/${encodeURIComponent(query.query_name)}/result`));
        renderResult(output, answer, query.query_name);
      }) }, 'run') },
    ]));
    view.append(element('h2', {}, 'Datasets'), table(datasets, [
      { title: 'name', cell: (dataset) => dataset.dataset_name },
      { title: 'index_by', cell: (dataset) => dataset.index_by.join(', ') },
      { title: 'query', cell: (dataset) => `${dataset.query.analysis_type} ${dataset.query.event_collection} ${dataset.query.interval} ${JSON.stringify(dataset.query.timeframe)}` },
      { title: 'read an index value', cell: (dataset) => element('form', { class: 'row', onsubmit: guarded(async (event) => {
        event.preventDefault();
        const query = new URLSearchParams({ index_by: event.target.elements.index.value, timeframe: event.target.elements.timeframe.value });
        const answer = await api('GET', projectPath(`/datasets/${encodeURIComponent(dataset.dataset_name)}/results?${query}`));
        renderResult(output, answer, `${dataset.dataset_name}: ${event.target.elements.index.value}`);
      }) }, element('input', { name: 'index', placeholder: 'index value', required: true }),
      element('input', { name: 'timeframe', value: typeof dataset.query.timeframe === 'string' ? dataset.query.timeframe : 'this_30_days' }),
      element('button', {}, 'read')) },
    ]), output);
  }

  const VIEWS = { projects: projectsView, collections: collectionsView, explorer: explorerView, keys: keysView, stored: storedView };
  // Views kept in their own scripts (tenants.js) register themselves in VIEWS through this.
  window.KeyholeConsole = { element, api, projectPath, guarded, table, notify, show, session, views: VIEWS };
  $('#sign-in-form').addEventListener('submit', guarded(signIn));
  $('#sign-out').addEventListener('click', () => location.reload());
  for (const button of document.querySelectorAll('#tabs button')) button.addEventListener('click', () => show(button.dataset.view));
})();
