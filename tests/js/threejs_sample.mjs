// Node driver for tests/test_export_threejs.py: one headless Chromium (playwright-core), one page
// (threejs_sample.html served on 127.0.0.1 by the test), every GLB of the job sampled in it.
//
//   node threejs_sample.mjs job.json
//
// job.json: {"url": page URL, "executable": chromium binary, "result": result JSON path,
//            "items": [{"glb": URL relative to the page, "times": [s, ...], "clip": name|null,
//                       "positions": out path, "bones": out path}, ...]}
// Writes each item's vertex world positions (times x vertices x 3, float32 little-endian) and
// bone world positions (times x bones x 3) to the given paths, and the result JSON: the loader's
// view of each file (animations, tracks, meshes, cameras, morph weights), the browser version,
// and every console error/warning, page error, failed or non-local request.
import { readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = new URL(job.url).origin;
const errors = [];
const warnings = [];

// playwright's launch() gives the browser a fresh temporary user data dir and removes it on close
const browser = await chromium.launch({
  executablePath: job.executable || '/usr/bin/chromium',
  headless: true,
  timeout: 60000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(60000);
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    else if (m.type() === 'warning') warnings.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
  // nothing leaves the test's server (no CDN, no network)
  await page.route((u) => u.origin !== origin && u.protocol !== 'data:', (route) => {
    errors.push(`blocked non-local request: ${route.request().url()}`);
    return route.abort();
  });
  await page.goto(job.url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.samplerReady === true);
  const items = [];
  for (const item of job.items) {
    const res = await page.evaluate(([u, t, c]) => window.sampleGLB(u, t, c), [item.glb, item.times, item.clip ?? null]);
    writeFileSync(item.positions, Buffer.from(res.positions, 'base64'));
    writeFileSync(item.bones, Buffer.from(res.bonePositions, 'base64'));
    delete res.positions;
    delete res.bonePositions;
    items.push({ glb: item.glb, ...res });
  }
  writeFileSync(job.result, JSON.stringify({ browser: browser.version(), three: await page.evaluate(
    async () => (await import('three')).REVISION), errors, warnings, items }));
} finally {
  await browser.close();
}
