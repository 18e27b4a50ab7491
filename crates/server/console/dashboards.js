// The console's Dashboards page (see index.html; docs/embedding.md): the project's stored dashboards, and
// an editor that builds one from tiles — a saved query, or the last query run in the Explorer — arranges
// them (order, width, chart), sets the viewer's controls and the theme, saves it with the master key, and
// previews it as any key or embed token would see it, with the <keyhole-dashboard> element the embed page
// uses, and the one-line embed for that credential.
(() => {
  const { element, api, projectPath, guarded, table, notify, show, session, views } = window.KeyholeConsole;
  const CHARTS = ['metric', 'line', 'area', 'bar', 'pie', 'table', 'funnel'];
  const $view = () => document.querySelector('#view');
  // The dashboard being edited: { name, title, tiles, controls, theme }.
  let draft = null;

  const emptyDraft = () => ({ name: '', title: '', tiles: [], controls: { timeframes: [], intervals: [] }, theme: {} });

  // The kid a credential's embeds are framed by: a token's header names it; an access key's is its
  // embed_key_id (read with the master key).
  async function kidOf(credential) {
    if (credential.includes('.')) {
      const [header] = credential.split('.');
      return JSON.parse(atob(header.replace(/-/g, '+').replace(/_/g, '/'))).kid;
    }
    return (await api('GET', projectPath(`/keys/${encodeURIComponent(credential)}`))).embed_key_id;
  }

  function tileRow(tile, index) {
    const update = (field, value) => { draft.tiles[index][field] = value; };
    const move = (step) => () => {
      const target = index + step;
      if (target < 0 || target >= draft.tiles.length) return;
      [draft.tiles[index], draft.tiles[target]] = [draft.tiles[target], draft.tiles[index]];
      redraw();
    };
    const source = tile.saved_query ? `saved query ${tile.saved_query}` : `${tile.query.analysis_type} ${tile.query.event_collection || ''}`;
    return element('div', { class: 'row tile-row', 'data-tile': index },
      element('input', { name: 'tile-title', value: tile.title, oninput: (event) => update('title', event.target.value) }),
      element('select', { name: 'chart', onchange: (event) => update('chart', event.target.value) },
        CHARTS.map((chart) => element('option', { selected: chart === tile.chart }, chart))),
      element('label', {}, 'width', element('input', { name: 'width', type: 'number', min: 1, max: 12, value: tile.width, oninput: (event) => update('width', Number(event.target.value)) })),
      element('span', { class: 'source' }, source),
      element('button', { type: 'button', onclick: move(-1) }, 'up'),
      element('button', { type: 'button', onclick: move(1) }, 'down'),
      element('button', { type: 'button', class: 'danger', onclick: () => { draft.tiles.splice(index, 1); redraw(); } }, 'remove'));
  }

  function list(text) {
    return text.split(',').map((value) => value.trim()).filter(Boolean);
  }

  // What the editor's fields hold, into the draft (before it is drawn again or saved).
  function readForm() {
    const form = document.querySelector('#dashboard-form');
    if (!form) return;
    const fields = form.elements;
    draft.name = fields.name.value.trim();
    draft.title = fields.title.value.trim();
    draft.controls = { timeframes: list(fields.timeframes.value), intervals: list(fields.intervals.value) };
    draft.theme = {};
    for (const field of ['font', 'color', 'background', 'accent']) if (fields[field].value.trim()) draft.theme[field] = fields[field].value.trim();
  }

  // Draws the editor again, keeping what was typed.
  function redraw() {
    readForm();
    return drawEditor();
  }

  async function drawEditor() {
    const saved = await api('GET', projectPath('/queries/saved'));
    const view = $view();
    view.replaceChildren();
    const savedSelect = element('select', { name: 'saved' }, saved.map((query) => element('option', { value: query.query_name }, query.query_name)));
    const preview = element('div', { id: 'dashboard-preview' });
    const form = element('form', {
      id: 'dashboard-form',
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        readForm();
        if (!draft.name) throw new Error('A dashboard needs a name.');
        const { name, ...definition } = draft;
        await api('PUT', projectPath(`/dashboards/${encodeURIComponent(name)}`), { body: definition });
        notify(`Saved dashboard ${name}.`);
      }),
    },
    element('div', { class: 'row' },
      element('label', {}, 'name', element('input', { name: 'name', value: draft.name, required: true, pattern: '[A-Za-z0-9_\\-]{1,256}' })),
      element('label', {}, 'title', element('input', { name: 'title', value: draft.title, required: true, size: 40 }))),
    element('fieldset', {}, element('legend', {}, 'tiles'), draft.tiles.map(tileRow),
      element('div', { class: 'row' }, savedSelect,
        element('button', { type: 'button', id: 'add-saved', onclick: () => {
          if (!savedSelect.value) return notify('The project has no saved query yet.', true);
          draft.tiles.push({ title: savedSelect.value, chart: 'metric', width: 6, saved_query: savedSelect.value });
          redraw();
        } }, 'add saved query'),
        element('button', { type: 'button', id: 'add-explorer', onclick: () => {
          if (!session.lastQuery) return notify('Run a query in the Explorer first.', true);
          const query = session.lastQuery;
          draft.tiles.push({ title: `${query.analysis_type} ${query.event_collection || ''}`.trim(), chart: query.analysis_type === 'funnel' ? 'funnel' : 'metric', width: 6, query });
          redraw();
        } }, 'add the Explorer\'s last query'))),
    element('fieldset', {}, element('legend', {}, 'viewer controls (comma-separated; empty: none)'),
      element('label', {}, 'timeframes', element('input', { name: 'timeframes', value: draft.controls.timeframes.join(', '), size: 40, placeholder: 'this_7_days, this_30_days' })),
      element('label', {}, 'intervals', element('input', { name: 'intervals', value: draft.controls.intervals.join(', '), size: 30, placeholder: 'daily, weekly' }))),
    element('fieldset', {}, element('legend', {}, 'theme (CSS values; empty: default)'),
      ['font', 'color', 'background', 'accent'].map((field) => element('label', {}, field, element('input', { name: field, value: draft.theme[field] || '', size: 14 })))),
    element('button', { type: 'submit' }, 'Save dashboard'));
    const previewForm = element('form', {
      id: 'preview-form',
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const credential = event.target.elements.credential.value.trim();
        const kid = await kidOf(credential);
        const dashboard = element('keyhole-dashboard', { project: session.project.id, dashboard: draft.name, token: credential, host: location.origin, kid });
        const url = `${location.origin}/embed/${encodeURIComponent(session.project.id)}/${encodeURIComponent(draft.name)}?kid=${encodeURIComponent(kid)}#token=${encodeURIComponent(credential)}`;
        preview.replaceChildren(
          element('p', {}, 'Embed it with: ', element('code', { id: 'embed-snippet' }, `<iframe src="${url}" width="100%" height="600" style="border:0"></iframe>`)),
          dashboard);
      }),
    }, element('label', {}, 'Preview as a key or embed token (save first)', element('input', { name: 'credential', type: 'password', autocomplete: 'off', size: 60, required: true })), element('button', {}, 'Preview'));
    view.append(element('h2', {}, draft.name ? `Dashboard ${draft.name}` : 'New dashboard'), form, element('h3', {}, 'Preview'), previewForm, preview);
  }

  async function dashboardsView() {
    const { dashboards } = await api('GET', projectPath('/dashboards'));
    const edit = (dashboard) => element('span', { class: 'row' },
      element('button', { type: 'button', onclick: guarded(async () => {
        draft = { name: dashboard.name, title: dashboard.title, tiles: dashboard.tiles, controls: dashboard.controls, theme: dashboard.theme };
        await drawEditor();
      }) }, 'edit'),
      element('button', { type: 'button', class: 'danger', onclick: guarded(async () => {
        if (!confirm(`Delete dashboard ${dashboard.name}? Pages embedding it show "There is no such dashboard".`)) return;
        await api('DELETE', projectPath(`/dashboards/${encodeURIComponent(dashboard.name)}`));
        await show('dashboards');
        notify(`Deleted dashboard ${dashboard.name}.`);
      }) }, 'delete'));
    $view().append(element('h2', {}, 'Dashboards'), table(dashboards, [
      { title: 'name', cell: (dashboard) => dashboard.name },
      { title: 'title', cell: (dashboard) => dashboard.title },
      { title: 'tiles', cell: (dashboard) => dashboard.tiles.length },
      { title: 'modified', cell: (dashboard) => dashboard.modified_at },
      { title: '', cell: edit },
    ]), element('button', { type: 'button', id: 'new-dashboard', onclick: guarded(async () => { draft = emptyDraft(); await drawEditor(); }) }, 'New dashboard'));
  }

  views.dashboards = dashboardsView;
})();
