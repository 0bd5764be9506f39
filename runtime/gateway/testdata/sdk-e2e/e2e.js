// Drives the real @armoriq/sdk against an armoriq gateway. Each scenario
// prints one line "RESULT {json}" that sdk_e2e_test.go checks.
// Env: GATEWAY, ARMORIQ_API_KEY (agent), ADMIN_KEY, AGENT_KEY_ID.
'use strict';
const { ArmorIQClient } = require('@armoriq/sdk');

const gw = process.env.GATEWAY;
const { result, attempt: expectError } = require('./results');

async function main() {
  const client = new ArmorIQClient({
    apiKey: process.env.ARMORIQ_API_KEY,
    userId: 'alice@example.com',
    agentId: 'sdk-agent',
    backendEndpoint: gw,
    proxyEndpoint: gw,
    iapEndpoint: gw,
  });
  await client.validateApiKey();
  result('health', { ok: true });

  const plan = client.capturePlan('test-llm', 'say hi then add', {
    goal: 'say hi then add',
    steps: [
      { action: 'echo', mcp: 'tools', params: { text: 'hello from the sdk' } },
      { action: 'add', mcp: 'other', params: { a: 2, b: 3 } },
    ],
  });
  const token = await client.getIntentToken(plan, null, 60);
  result('token', { ok: true, stepProofs: token.stepProofs.length, planHash: token.planHash, jwt: !!token.jwtToken });

  await expectError('invoke-allowed', async () => (await client.invoke('tools', 'echo', token, { text: 'hello from the sdk' })).result);
  await expectError('invoke-second-server', async () => (await client.invoke('other', 'add', token, { a: 2, b: 3 })).result);
  await expectError('tampered-params', async () => (await client.invoke('tools', 'echo', token, { text: 'something else' })).result);
  await expectError('action-not-in-plan', async () => (await client.invoke('tools', 'slow', token, {})).result);

  // A plan with a tool the policy denies: refused at issuance.
  const denied = client.capturePlan('test-llm', 'delete', { goal: 'delete', steps: [{ action: 'delete_repo', mcp: 'tools', params: {} }] });
  await expectError('denied-at-issue', async () => (await client.getIntentToken(denied, null, 60)).tokenId);

  // The token's own policy: a planned step it leaves out is refused at
  // issuance; within it, the token works.
  await expectError('token-policy-leaves-out-a-step', async () => (await client.getIntentToken(plan, { allow: ['tools/*'], deny: [] }, 60)).tokenId);
  const narrow = await client.getIntentToken(plan, { allow: ['tools/ech*', 'other.add'], deny: ['tools/delete_*'] }, 60);
  await expectError('token-policy-allowed', async () => (await client.invoke('tools', 'echo', narrow, { text: 'hello from the sdk' })).result);

  // Expired: the SDK checks locally first; a token whose local expiry is
  // pushed forward is refused by the gateway's own clock.
  const short = await client.getIntentToken(client.capturePlan('l', 'p', { goal: 'g', steps: [{ action: 'echo', mcp: 'tools', params: { text: 'x' } }] }), null, 1);
  await new Promise((r) => setTimeout(r, 1300));
  await expectError('expired-local', async () => (await client.invoke('tools', 'echo', short, { text: 'x' })).result);
  short.expiresAt = Date.now() / 1000 + 600;
  await expectError('expired-server', async () => (await client.invoke('tools', 'echo', short, { text: 'x' })).result);

  // Revoked key: the admin revokes it, the next call is refused.
  const res = await fetch(`${gw}/v1/keys/${process.env.AGENT_KEY_ID}`, { method: 'DELETE', headers: { Authorization: `Bearer ${process.env.ADMIN_KEY}` } });
  if (res.status !== 200) throw new Error('revoke failed: ' + res.status);
  await expectError('revoked-key', async () => (await client.invoke('tools', 'echo', token, { text: 'hello from the sdk' })).result);
  const h = await fetch(`${gw}/health`, { headers: { 'X-API-Key': process.env.ARMORIQ_API_KEY } });
  result('revoked-health', { ok: h.status === 200, status: h.status, revokedHeader: h.headers.get('x-armoriq-revoked') });
}

main().then(() => console.log('DONE'), (e) => { console.log('FATAL ' + (e && e.stack || e)); process.exit(1); });
