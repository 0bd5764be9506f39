// The seeds' quickstart, driven by the real @armoriq/sdk 0.2.6 exactly as
// its README uses it: one service key, each call naming its end user.
// Each scenario prints one line "RESULT {json}" that sdk_e2e_test.go checks.
// Env: GATEWAY, ARMORIQ_API_KEY (the service's agent key).
'use strict';
const { ArmorIQClient } = require('@armoriq/sdk');

const gw = process.env.GATEWAY;
const { attempt } = require('./results');

async function main() {
  const client = new ArmorIQClient({
    apiKey: process.env.ARMORIQ_API_KEY,
    userId: 'weather-service',
    agentId: 'weather-agent',
    backendEndpoint: gw,
    proxyEndpoint: gw,
    iapEndpoint: gw,
  });

  // One plan, one token, calls for two end users.
  const plan = client.capturePlan('gpt-4', 'What is the weather in Paris?', {
    goal: 'weather in Paris',
    steps: [{ action: 'echo', mcp: 'tools', params: { text: 'weather in Paris' } }],
  });
  const token = await client.getIntentToken(plan, null, 60);
  await attempt('alice', async () => (await client.invoke('tools', 'echo', token, { text: 'weather in Paris' }, undefined, 'alice@customer.com')).result);
  await attempt('bob', async () => (await client.invoke('tools', 'echo', token, { text: 'weather in Paris' }, undefined, 'bob@customer.com')).result);

  // The token's own policy leaves out a planned step: refused at issue.
  const two = client.capturePlan('gpt-4', 'weather then pay', {
    goal: 'weather then pay',
    steps: [
      { action: 'echo', mcp: 'tools', params: { text: 'weather in Paris' } },
      { action: 'pay', mcp: 'tools', params: { amount: 10, to: 'acme' } },
    ],
  });
  await attempt('token-policy-leaves-out-pay', async () => (await client.getIntentToken(two, { allow: ['tools/echo'], deny: [] }, 60)).tokenId);

  // A payment the hold rule covers, its amount written "5,000": the
  // condition cannot be evaluated, so the step is refused, not allowed.
  const formatted = client.capturePlan('gpt-4', 'pay 5,000', {
    goal: 'pay', steps: [{ action: 'pay', mcp: 'tools', params: { amount: '5,000', to: 'acme' } }],
  });
  await attempt('payment-5,000', async () => (await client.getIntentToken(formatted, null, 60)).tokenId);

  // The same payment as a number: issued, then held at the call.
  const big = client.capturePlan('gpt-4', 'pay 5000', {
    goal: 'pay', steps: [{ action: 'pay', mcp: 'tools', params: { amount: 5000, to: 'acme' } }],
  });
  const bigToken = await client.getIntentToken(big, null, 60);
  await attempt('payment-5000-held', async () => (await client.invoke('tools', 'pay', bigToken, { amount: 5000, to: 'acme' }, undefined, 'alice@customer.com')).result);
}

main().then(() => console.log('DONE'), (e) => { console.log('FATAL ' + (e && e.stack || e)); process.exit(1); });
