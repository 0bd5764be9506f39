// A held payment through the real @armoriq/sdk 0.2.6 and the delegation
// calls the SDKs make (POST /delegation/request, GET
// /delegation/check-approved, the retry with _delegation_id, POST
// /delegation/mark-executed), while a person approves it in the console.
// Each step prints one line "RESULT {json}" that the Go test checks.
// Env: GATEWAY, ARMORIQ_API_KEY (the service's agent key).
'use strict';
const { ArmorIQClient } = require('@armoriq/sdk');

const gw = process.env.GATEWAY;
const key = process.env.ARMORIQ_API_KEY;
const user = 'alice@customer.com';
const { result, attempt } = require('./results');
const headers = { 'X-API-Key': key, 'X-User-Email': user, 'Content-Type': 'application/json' };

async function main() {
  const client = new ArmorIQClient({ apiKey: key, userId: user, agentId: 'payments-agent', backendEndpoint: gw, proxyEndpoint: gw, iapEndpoint: gw });
  const plan = client.capturePlan('gpt-4', 'pay the acme invoice', {
    goal: 'pay', steps: [{ action: 'pay', mcp: 'tools', params: { amount: 5000, to: 'acme' } }],
  });
  const token = await client.getIntentToken(plan, null, 600);
  const ref = token.rawToken.intent_reference || token.tokenId;

  // The call is held.
  await attempt('held', async () => (await client.invoke('tools', 'pay', token, { amount: 5000, to: 'acme' }, undefined, user)).result);

  // The SDK asks for approval of exactly that call.
  const req = await fetch(gw + '/delegation/request', {
    method: 'POST', headers: { ...headers, 'Idempotency-Key': 'pay-acme-1' },
    body: JSON.stringify({ tool: 'pay', action: 'pay', arguments: { amount: 5000, to: 'acme' }, amount: 5000, requesterEmail: user,
      intentReference: ref, merkleRoot: token.rawToken.merkle_root, reason: 'invoice 42' }),
  });
  const delegation = await req.json();
  result('requested', { status: req.status, delegationId: delegation.delegationId, state: delegation.status });

  // Polls until a person decides (the test approves it in the console).
  let approved;
  for (let i = 0; i < 300; i++) {
    const r = await fetch(gw + '/delegation/check-approved?tool=pay&delegationId=' + encodeURIComponent(delegation.delegationId), { headers });
    approved = await r.json();
    if (approved.approved || approved.status === 'denied') break;
    await new Promise((res) => setTimeout(res, 200));
  }
  result('approved', { approved: approved.approved, approverEmail: approved.approverEmail });

  // The same call, retried with the approval: runs once.
  const retry = { amount: 5000, to: 'acme', _delegation_id: delegation.delegationId };
  await attempt('retried', async () => (await client.invoke('tools', 'pay', token, retry, undefined, user)).result);
  await attempt('retried-again', async () => (await client.invoke('tools', 'pay', token, retry, undefined, user)).result);

  const done = await fetch(gw + '/delegation/mark-executed', { method: 'POST', headers, body: JSON.stringify({ delegationId: delegation.delegationId }) });
  result('mark-executed', { status: done.status, body: await done.json() });
  console.log('DONE');
}

main().catch((e) => { console.error(e); process.exit(1); });
