// The console's Tenants page (see index.html; docs/tenants.md): the project's tenancy property, its tenants
// with their usage, and creating, suspending, resuming, rotating, deleting and erasing one. Like the rest
// of the console, each action is one documented request signed with the key the user signed in with;
// app.js shares its helpers through window.KeyholeConsole and draws this view when its tab is chosen.
(() => {
  const { element, api, projectPath, guarded, table, notify, show, session, views } = window.KeyholeConsole;
  const key = () => session.masterKey || session.orgKey;
  const call = (method, rest, body) => api(method, projectPath(rest), { key: key(), body });
  const $view = () => document.querySelector('#view');
  let after = '';

  function bytes(count) {
    if (count < 1024) return `${count} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let value = count / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(1)} ${units[unit]}`;
  }

  // Shows keys that are shown once (creation, rotation) in the notice, where they stay until the next action.
  function showSecrets(message, answer) {
    document.querySelector('#notice').replaceChildren(element('span', {}, message,
      ' Read key: ', element('span', { class: 'secret', id: 'tenant-read-key' }, answer.read_key),
      ' · write key: ', element('span', { class: 'secret', id: 'tenant-write-key' }, answer.write_key)));
  }

  async function tenancyForm() {
    $view().append(element('h2', {}, 'Tenants'),
      element('p', {}, 'Name the property that says which customer an event belongs to (for example customer.id): each tenant gets a read key filtered to its value and a write key that stamps it.'),
      element('form', {
        id: 'tenancy-form',
        onsubmit: guarded(async (event) => {
          event.preventDefault();
          await call('PUT', '/tenancy', { property: event.target.elements.property.value.trim() });
          await show('tenants');
        }),
      }, element('label', {}, 'tenancy property ', element('input', { name: 'property', required: true, placeholder: 'customer.id' })), element('button', {}, 'Set')));
  }

  // What erasing a tenant deletes, said before it is done; the user types the id to go on.
  async function erase(tenant, property) {
    const collections = (await call('GET', '/events')).map((collection) => collection.name);
    const message = `Erase tenant ${tenant.id}? This revokes its keys and embed tokens and permanently deletes its ${tenant.usage.events_stored} stored events `
      + `(every event whose ${property} is "${tenant.id}") in every collection: ${collections.join(', ') || 'none yet'}. `
      + 'It cannot be undone; backups are not reached. Type the tenant id to erase it.';
    const typed = prompt(message);
    if (typed === null) return;
    if (typed.trim() !== tenant.id) throw new Error(`Nothing erased: "${typed}" is not ${tenant.id}.`);
    const receipt = await call('DELETE', `/tenants/${encodeURIComponent(tenant.id)}?erase=true`);
    await show('tenants');
    const counts = Object.entries(receipt.collections).map(([name, count]) => `${name} ${count}`).join(', ');
    notify(`Erased ${tenant.id}: ${receipt.events_deleted} events deleted (${counts}). Receipt ${receipt.receipt_id}, completed ${receipt.completed_at}.`);
  }

  async function tenantsView() {
    let tenancy;
    try {
      tenancy = await call('GET', '/tenancy');
    } catch (error) {
      if (!error.message.startsWith('ResourceNotFoundError')) throw error;
      await tenancyForm();
      return;
    }
    const page = await call('GET', `/tenants?limit=50${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    const path = (tenant, rest = '') => `/tenants/${encodeURIComponent(tenant.id)}${rest}`;
    const button = (label, work, className) => element('button', { type: 'button', class: className, onclick: guarded(work) }, label);
    const actions = (tenant) => element('span', { class: 'row' },
      tenant.suspended
        ? button('resume', async () => { await call('PATCH', path(tenant), { suspended: false }); await show('tenants'); notify(`Resumed ${tenant.id}.`); })
        : button('suspend', async () => { await call('PATCH', path(tenant), { suspended: true }); await show('tenants'); notify(`Suspended ${tenant.id}: its keys and embed tokens are refused.`); }, 'danger'),
      element('form', { class: 'row rotate', onsubmit: guarded(async (event) => {
        event.preventDefault();
        const grace = Number(event.target.elements.grace.value || 0);
        const answer = await call('POST', path(tenant, '/rotate-keys'), { grace_seconds: grace });
        await show('tenants');
        showSecrets(`New keys for ${tenant.id}; the old ones stop ${grace ? `in ${grace} s` : 'now'}. Shown this once.`, answer);
      }) }, element('label', {}, 'grace s ', element('input', { name: 'grace', type: 'number', min: 0, value: 0, class: 'grace' })), element('button', {}, 'rotate')),
      button('delete', async () => {
        if (!confirm(`Delete tenant ${tenant.id}? Its keys and embed tokens are revoked; its events are kept.`)) return;
        await call('DELETE', path(tenant));
        await show('tenants');
        notify(`Deleted ${tenant.id}; its events are kept.`);
      }, 'danger'),
      button('erase', () => erase(tenant, tenancy.property), 'danger erase'));
    const usage = (tenant) => tenant.usage || {};
    $view().append(element('h2', {}, 'Tenants'),
      element('p', {}, `Tenancy property: ${tenancy.property}. Usage covers the last 30 days (UTC) from ${(page.tenants[0] && usage(page.tenants[0]).since) || 'today'}.`),
      table(page.tenants, [
        { title: 'id', cell: (tenant) => tenant.id },
        { title: 'name', cell: (tenant) => tenant.name },
        { title: 'status', cell: (tenant) => (tenant.suspended ? 'suspended' : 'active') },
        { title: 'events stored', cell: (tenant) => usage(tenant).events_stored },
        { title: 'bytes', cell: (tenant) => bytes(usage(tenant).bytes_stored || 0) },
        { title: 'written (30 d)', cell: (tenant) => usage(tenant).events_written },
        { title: 'queries (30 d)', cell: (tenant) => usage(tenant).queries },
        { title: 'last activity', cell: (tenant) => usage(tenant).last_activity || 'never' },
        { title: '', cell: actions },
      ]));
    const pages = element('p', { class: 'row' });
    if (after) pages.append(element('button', { type: 'button', onclick: () => { after = ''; show('tenants'); } }, 'first page'));
    if (page.next_page_url) {
      const last = page.tenants[page.tenants.length - 1].id;
      pages.append(element('button', { type: 'button', onclick: () => { after = last; show('tenants'); } }, 'next page'));
    }
    $view().append(pages, element('h3', {}, 'Create a tenant'), element('form', {
      id: 'create-tenant',
      onsubmit: guarded(async (event) => {
        event.preventDefault();
        const fields = event.target.elements;
        const body = { id: fields.id.value.trim() };
        if (fields.name.value.trim()) body.name = fields.name.value.trim();
        if (fields.options.value.trim()) {
          try { body.options = JSON.parse(fields.options.value); } catch (_) { throw new Error('The options are not JSON.'); }
        }
        const created = await call('POST', '/tenants', body);
        await show('tenants');
        showSecrets(`Tenant ${created.id} created. Its keys are shown this once.`, created);
      }),
    },
    element('div', { class: 'row' },
      element('label', {}, 'id ', element('input', { name: 'id', required: true, pattern: '[A-Za-z0-9._\\-]{1,128}', placeholder: 'acme' })),
      element('label', {}, 'name ', element('input', { name: 'name', placeholder: 'Acme Inc.' }))),
    element('label', {}, 'options (JSON, optional: filters, max_lookback, limits, origins, expires_at) ',
      element('textarea', { name: 'options', rows: 2, cols: 70, placeholder: '{"limits": {"queries_per_day": 10000}}' })),
    element('button', { type: 'submit' }, 'Create tenant')));
  }

  views.tenants = tenantsView;
})();
