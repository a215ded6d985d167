// The dashboard follows a broker failover (tests/e2e/test_dashboard_failover.py). Env:
// BASE_A (active broker), BASE_B (standby), TOKEN, CHROMIUM, SHOTS. Prints "READY" once
// the dashboard on A is live and knows both brokers, then waits for the driver to kill A:
// the page must move to B by itself, keep the login, and show live data again. The last
// line is one JSON object of findings; exit 1 with the reason on a failed expectation.
'use strict';
const path = require('path');
const { env, expect, launch } = require('./common');

async function main() {
  const a = env('BASE_A');
  const b = env('BASE_B');
  const browser = await launch();
  const findings = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // The standby's own page says what it is and points to the active broker.
    const standby = await context.newPage();
    const res = await standby.goto(b + '/', { waitUntil: 'domcontentloaded' });
    expect(res.status() === 503, `standby page status 503 (got ${res.status()})`);
    const text = await standby.textContent('body');
    expect(/standby/.test(text) && text.includes(a + '/'), `standby page names the leader (got "${text}")`);
    await standby.close();

    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(a + '/', { waitUntil: 'load' });
    await page.fill('#token', env('TOKEN'));
    await page.click('#login');
    await page.waitForSelector('#live.on', { timeout: 15000 });
    await page.goto(a + '/#/nodes');
    await page.waitForSelector('[data-testid^="online-"].on', { timeout: 20000 });
    await page.waitForFunction(() => state.brokers.length === 2, null, { timeout: 15000 });
    findings.brokersKnown = await page.evaluate(() => state.brokers.map((x) => x.role).sort());
    process.stdout.write('READY\n');

    const t0 = Date.now();
    await page.waitForURL((u) => u.origin === new URL(b).origin, { timeout: 40000 });
    findings.switchMs = Date.now() - t0;
    await page.waitForSelector('#live.on', { timeout: 20000 });
    findings.liveMs = Date.now() - t0;
    expect(!page.url().includes('handoff'), `the token left the address (${page.url()})`);
    expect(new URL(page.url()).hash === '#/nodes', `the page kept its view (${page.url()})`);
    await page.waitForSelector('[data-testid^="online-"].on', { timeout: 30000 });
    findings.nodesOnline = await page.locator('[data-testid^="online-"].on').count();
    findings.loggedIn = await page.evaluate(() => !!localStorage.getItem('spiderhub.token'));
    await page.screenshot({ path: path.join(env('SHOTS'), 'after-failover.png'), fullPage: true });
    expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(findings) + '\n');
}

main().catch((e) => {
  process.stdout.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
