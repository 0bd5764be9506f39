// The seeds' quickstart on the official ArmorIQ SDK (@armoriq/sdk 0.2.6),
// against the gateway of `armoriq up`:
//
//   npm install && ARMORIQ_API_KEY=$(cat ../../.armoriq/agent.key) node quickstart.js
//
// One agent key, a plan, an intent token, and a tool call for each of two
// end users: the policy allows alice@customer.com and a rule denies
// bob@customer.com. ARMORIQ_ENDPOINT names another gateway
// (default http://127.0.0.1:8080). Exits 1 when the gateway does not answer
// as examples/quickstart/armoriq.yaml says.
'use strict';
const { ArmorIQClient } = require('@armoriq/sdk');

const endpoint = process.env.ARMORIQ_ENDPOINT || 'http://127.0.0.1:8080';

async function main() {
  // The key comes from ARMORIQ_API_KEY; one gateway serves all three APIs.
  const client = new ArmorIQClient({
    userId: 'quickstart',
    agentId: 'weather-agent',
    backendEndpoint: endpoint,
    proxyEndpoint: endpoint,
    iapEndpoint: endpoint,
  });

  // 1. Capture the plan (0.2.6: llm, prompt, plan).
  const plan = client.capturePlan('gpt-4', 'What is the weather in Boston?', {
    goal: 'What is the weather in Boston?',
    steps: [{ action: 'get_weather', mcp: 'weather-mcp', params: { city: 'Boston' } }],
  });

  // 2. Get an intent token for it (0.2.6: plan, policy, validity in seconds).
  const token = await client.getIntentToken(plan, null, 60);

  // 3. Call the tool for alice (0.2.6: mcp, action, token, params, proof, userEmail).
  const res = await client.invoke('weather-mcp', 'get_weather', token, { city: 'Boston' }, undefined, 'alice@customer.com');
  console.log('QUICKSTART alice@customer.com: ' + res.result.content[0].text);

  // 4. The same call for bob: refused. 0.2.6 reports any refusal as
  // "HTTP 403"; the gateway's answer says which rule, and why.
  try {
    await client.invoke('weather-mcp', 'get_weather', token, { city: 'Boston' }, undefined, 'bob@customer.com');
    console.log('QUICKSTART bob@customer.com: allowed, but the policy should block him');
    process.exitCode = 1;
  } catch (e) {
    console.log(`QUICKSTART bob@customer.com: refused (${e.constructor.name}: ${e.message})`);
  }
}

main().catch((e) => {
  console.error('quickstart: ' + (e && e.message || e));
  process.exit(1);
});
