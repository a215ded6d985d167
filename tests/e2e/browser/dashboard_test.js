// Drives Debian's chromium (playwright-core) through the dashboard, the way an operator
// would. Environment: BASE (broker URL), TOKEN, START_URL, OUTPUT (items file), SHOTS
// (screenshot folder), CHROMIUM (executable). Prints one JSON line of findings; exits 1
// with the reason on the first failed expectation.
'use strict';
const path = require('path');
const { env, expect, launch } = require('./common');

async function main() {
  const base = env('BASE');
  const shots = env('SHOTS');
  const browser = await launch();
  const findings = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    // Count live frames and API calls to check the "at most one update per second" rule.
    let frames = 0;
    page.on('websocket', (ws) => ws.on('framereceived', () => { frames++; }));
    const apiCalls = [];
    page.on('request', (r) => { if (r.url().includes('/api/v1.0/')) apiCalls.push(Date.now()); });

    // ---- login: a wrong token is refused with the API's message, the right one works ----
    await page.goto(base + '/', { waitUntil: 'load' });
    await page.fill('#token', 'wrong-token');
    await page.click('#login');
    await page.waitForSelector('#error:not([hidden])', { timeout: 10000 });
    const loginError = await page.textContent('#error');
    expect(/unauthorized/.test(loginError), `login error shown (got "${loginError}")`);
    await page.fill('#token', env('TOKEN'));
    await page.click('#login');
    await page.waitForSelector('#nav:not([hidden])', { timeout: 10000 });
    await page.waitForSelector('#live.on', { timeout: 10000 });

    // ---- nodes: the node is online ----
    await page.goto(base + '/#/nodes');
    await page.waitForSelector('[data-testid^="online-"].on', { timeout: 20000 });
    findings.nodesOnline = await page.locator('[data-testid^="online-"].on').count();
    await page.screenshot({ path: path.join(shots, 'nodes.png'), fullPage: true });

    // ---- jobs: cron validated through the API, then a block job created by the form ----
    await page.goto(base + '/#/jobs');
    await page.waitForSelector('#job-form');
    await page.fill('#job-name', 'dashboard-crawl');
    await page.selectOption('#job-type', 'block');
    await page.fill('#job-cron', '61 * * * *');
    await page.dispatchEvent('#job-cron', 'change');
    await page.waitForSelector('#cron-hint.bad', { timeout: 10000 });
    const cronError = await page.textContent('#cron-hint');
    expect(/out of range/.test(cronError), `cron error shown (got "${cronError}")`);
    await page.fill('#job-cron', '0 0 1 1 *');
    await page.dispatchEvent('#job-cron', 'change');
    await page.waitForFunction(() => {
      const h = document.querySelector('#cron-hint');
      return h && !h.classList.contains('bad') && h.textContent.startsWith('next:');
    }, null, { timeout: 10000 });
    findings.nextFires = (await page.textContent('#cron-hint')).split(',').length;
    await page.fill('#prop-FullClassName', 'spiderhub.samples.SiteSpider');
    await page.fill('#prop-Arguments', JSON.stringify({ startUrl: env('START_URL'), maxDepth: 6,
                                                         output: env('OUTPUT') }));
    await page.click('#job-save');
    await page.waitForSelector('tr[data-job="dashboard-crawl"]', { timeout: 10000 });
    await page.screenshot({ path: path.join(shots, 'jobs.png'), fullPage: true });

    // ---- trigger: the run page follows; progress reaches 100 % live ----
    await page.click('tr[data-job="dashboard-crawl"] [data-action="trigger"]');
    await page.waitForFunction(() => /^#\/runs\/[0-9a-f-]{36}$/.test(location.hash), null,
                               { timeout: 15000 });
    const identity = (await page.evaluate(() => location.hash)).split('/')[2];
    findings.identity = identity;
    await page.goto(base + '/#/runs');
    const bar = `[data-testid="progress-${identity}"]`;
    await page.waitForSelector(bar, { timeout: 15000 });
    const started = Date.now();
    await page.waitForSelector(`${bar}[data-percent="100"]`, { timeout: 120000 });
    await page.waitForFunction((id) => {
      const row = document.querySelector(`tr[data-run="${id}"] td.status-Success`);
      return !!row;
    }, identity, { timeout: 30000 });
    findings.secondsTo100 = (Date.now() - started) / 1000;
    const stray = await page.evaluate(() => /\b(null|undefined|NaN)\b/.test(document.querySelector('main').innerText));
    expect(!stray, 'no null/undefined/NaN rendered on the runs page');
    await page.screenshot({ path: path.join(shots, 'runs.png'), fullPage: true });

    // ---- run detail: blocks by state ----
    await page.goto(base + `/#/runs/${identity}`);
    await page.waitForFunction(() => {
      const c = document.querySelector('#block-counts');
      return c && /success [1-9]/.test(c.textContent);
    }, null, { timeout: 15000 });
    findings.blockCounts = await page.textContent('#block-counts');
    await page.screenshot({ path: path.join(shots, 'run.png'), fullPage: true });

    // ---- update rate: over 5 s of watching, ≤ 1 live frame and no API call per second ----
    await page.goto(base + '/#/runs');
    await page.waitForTimeout(500);
    const f0 = frames;
    const t0 = Date.now();
    await page.waitForTimeout(5000);
    const liveRate = (frames - f0) / ((Date.now() - t0) / 1000);
    const apiRecent = apiCalls.filter((t) => t >= t0).length;
    findings.liveFramesPerSecond = Number(liveRate.toFixed(2));
    findings.apiCallsWhileWatching = apiRecent;
    expect(liveRate <= 1.25, `at most one live update per second (got ${liveRate})`);
    expect(liveRate >= 0.5, `live updates keep coming (got ${liveRate})`);
    expect(apiRecent <= 5, `no polling while watching (got ${apiRecent} calls in 5 s)`);

    // ---- phone width: no horizontal page scroll, screenshots ----
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(base + '/#/runs');
    await page.waitForSelector(bar);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    findings.phoneOverflowPx = overflow;
    expect(overflow <= 1, `no horizontal scroll at phone width (overflow ${overflow}px)`);
    await page.screenshot({ path: path.join(shots, 'runs-phone.png'), fullPage: true });
    await page.goto(base + '/#/jobs');
    await page.waitForSelector('#job-form');
    await page.screenshot({ path: path.join(shots, 'jobs-phone.png'), fullPage: true });

    expect(consoleErrors.length === 0, `no script errors (got ${consoleErrors.join('; ')})`);
    console.log(JSON.stringify(findings));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
