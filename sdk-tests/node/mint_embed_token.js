// Mints a Keyhole embed token (scheme "Keyhole embed token v1", see the README) with nothing but
// Node's built-in crypto, as a SaaS backend would: a JWT signed with EdDSA/Ed25519 whose key seed is
// SHA-256("keyhole-embed-token-v1:" + access key secret).
//
// Usage: node mint_embed_token.js <access key secret> '<claims JSON>'   → prints the token.
'use strict';
const crypto = require('crypto');

function base64url(buffer) {
  return Buffer.from(buffer).toString('base64url');
}

function mintEmbedToken(secret, claims) {
  const seed = crypto.createHash('sha256').update('keyhole-embed-token-v1:' + secret).digest();
  // PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410).
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const privateKey = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  const publicKey = crypto.createPublicKey(privateKey).export({ format: 'jwk' });
  const header = { alg: 'EdDSA', typ: 'JWT', kid: publicKey.x };
  const signingInput = base64url(JSON.stringify(header)) + '.' + base64url(JSON.stringify(claims));
  const signature = crypto.sign(null, Buffer.from(signingInput), privateKey);
  return signingInput + '.' + base64url(signature);
}

const [secret, claims] = process.argv.slice(2);
process.stdout.write(mintEmbedToken(secret, JSON.parse(claims)));
