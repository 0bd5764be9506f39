// What every SDK script here prints: one line "RESULT {json}" per
// scenario, which the Go tests read (runSDKScript in sdk_e2e_test.go).
'use strict';

const result = (scenario, fields) => console.log('RESULT ' + JSON.stringify({ scenario, ...fields }));
const errName = (e) => (e && e.constructor && e.constructor.name) || String(e);

// attempt runs fn and reports its value, or the exception the SDK raised;
// it returns the value (undefined after an exception).
async function attempt(scenario, fn) {
  try {
    const r = await fn();
    result(scenario, { ok: true, value: r });
    return r;
  } catch (e) {
    result(scenario, { ok: false, error: errName(e), message: String(e.message || e) });
    return undefined;
  }
}

module.exports = { result, errName, attempt };
