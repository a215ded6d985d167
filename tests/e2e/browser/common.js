// Shared by the browser tests: environment, expectations, Debian's chromium.
'use strict';
const { chromium } = require('playwright-core');

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};

function expect(cond, what) {
  if (!cond) throw new Error('expectation failed: ' + what);
}

// Headless chromium from $CHROMIUM (playwright-core drives it, it does not download one).
function launch() {
  return chromium.launch({
    executablePath: env('CHROMIUM'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 60000,
  });
}

module.exports = { env, expect, launch };
