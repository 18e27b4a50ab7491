// Writes events to a Keyhole server with the official keen-tracking 5.0.1 SDK under Node, unchanged.
// Pointed at the server through its documented options: host, protocol, nodeRequestConfig.port.
// Exits non-zero on any failure; the Rust test then checks what was stored.
const assert = require('assert');
const KeenTracking = require('keen-tracking');

const target = new URL(process.env.KEYHOLE_URL);
const client = new KeenTracking({
  projectId: process.env.KEYHOLE_PROJECT_ID,
  writeKey: process.env.KEYHOLE_WRITE_KEY,
  host: target.hostname,
  protocol: 'http',
  nodeRequestConfig: { port: Number(target.port) },
});

async function main() {
  const single = await client.recordEvent('sdk node', { source: 'recordEvent', user: { id: 'u2' } });
  assert.deepStrictEqual(single, { created: true });
  const batch = await client.recordEvents({
    'sdk node': [{ source: 'recordEvents', n: 1 }, { source: 'recordEvents', n: 2 }],
    sdk_node_other: [{ x: true }],
  });
  assert.deepStrictEqual(batch, {
    'sdk node': [{ success: true }, { success: true }],
    sdk_node_other: [{ success: true }],
  });
  await assert.rejects(
    client.recordEvent('sdk node', { 'bad.name': 1 }),
    (error) => error.code === 'InvalidPropertyNameError',
  );
  console.log('node sdk ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
