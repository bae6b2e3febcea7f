// Node driver for tests/test_view.py (and benchmarks/view_screenshot.py): one headless Chromium
// (playwright-core), each page of the job opened, used through its controls and read back
// through window.wbcapView (wbcap/view/static/app.js).
//
//   node view_driver.mjs job.json
//
// job.json: {"executable": chromium binary, "result": result JSON path, "out": folder for files,
//            "viewport": [w, h] (default 1280x720),
//            "pages": [{"name", "url", "kind": "video" | "image" | "file",
//                       "times": [s, ...] (video: seek to each, read back state, the video's pixels,
//                                 each track's skinned vertices, pelvis and its pixels through the
//                                 page's source camera, and the selected track's parameters),
//                       "controls": false skips the controls (next-frame button, keys, play/pause; on by default),
//                       "play_ms": ms to play before pausing (video, optional),
//                       "screenshot": {"time": s | null, "source_camera": bool, "grid": bool}: the 3D canvas,
//                       "page_screenshot": {"time": s | null, "select": track id | null}: the whole page, last}]}
// Writes <out>/<name>_t<i>_track<id>.f32 (vertices, float32 LE), <out>/<name>_t<i>_video.rgba,
// <out>/<name>_view.png (the 3D canvas), <out>/<name>_page.png and the result JSON: per page the load time, the
// layout (the page's width against the window's, any control covered by another element), the states,
// parameters and file names, the header's frame text, and every console error/warning, page error,
// failed, HTTP >= 400 or non-local request. A "file" page is opened as is (a file:// address) and only checked for
// the message that says how to serve it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const [vw, vh] = job.viewport || [1280, 720];
const browser = await chromium.launch({
  executablePath: job.executable || '/usr/bin/chromium',
  headless: true,
  timeout: 60000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required'],
});

async function openPage(spec) {
  const errors = [];
  const warnings = [];
  const page = await browser.newPage({ viewport: { width: vw, height: vh } });
  page.setDefaultTimeout(60000);
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    else if (m.type() === 'warning') warnings.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    // a video request the browser itself cancels when it seeks elsewhere is not a failure
    if (!(why === 'net::ERR_ABORTED' && r.resourceType() === 'media')) errors.push(`request failed: ${r.url()} (${why})`);
  });
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
  if (spec.kind !== 'file') {
    const origin = new URL(spec.url).origin;
    await page.route((u) => u.origin !== origin && u.protocol !== 'data:', (route) => {
      errors.push(`blocked non-local request: ${route.request().url()}`);
      return route.abort();
    });
  }
  return { page, errors, warnings };
}

async function screenshot(page, spec, file) {
  const s = spec.screenshot;
  if (s.time !== null && s.time !== undefined) await page.evaluate((t) => window.wbcapView.seek(t), s.time);
  if (s.source_camera !== undefined && (await page.isChecked('#src-cam')) !== s.source_camera) await page.click('#src-cam');
  if (s.grid !== undefined && (await page.isChecked('#grid')) !== s.grid) await page.click('#grid');
  // two animation frames: the resize and the render the clicks asked for have happened
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const state = await page.evaluate(() => window.wbcapView.state());
  state.box = await page.locator('#view3d canvas').boundingBox();
  await page.locator('#view3d canvas').screenshot({ path: file });
  return state;
}

const result = { browser: browser.version(), pages: [] };
try {
  for (const spec of job.pages) {
    const { page, errors, warnings } = await openPage(spec);
    const res = { name: spec.name, kind: spec.kind, errors, warnings };
    result.pages.push(res);
    try {
      await usePage(page, spec, res);
    } catch (err) {
      res.fatal = String(err && err.stack || err);
    }
    await page.close();
  }
} finally {
  writeFileSync(job.result, JSON.stringify(result));
  await browser.close();
}

async function usePage(page, spec, res) {
    const t0 = Date.now();
    await page.goto(spec.url, { waitUntil: 'load' });
    if (spec.kind === 'file') {
      res.fileWarningVisible = await page.isVisible('#file-warning');
      res.fileWarningText = await page.textContent('#file-warning');
      res.mainVisible = await page.isVisible('main');
      return;
    }
    await page.waitForFunction(() => window.wbcapView && window.wbcapView.ready === true);
    res.firstFrameMs = Date.now() - t0;
    res.loaded = await page.evaluate(() => window.wbcapView.whenLoaded());
    res.loadMs = Date.now() - t0;
    res.manifest = await page.evaluate(() => window.wbcapView.manifest);
    res.frameText = await page.textContent('#frame-info');
    res.trackItems = await page.$$eval('#tracks li', (items) => items.map((li) => li.textContent));
    // the layout at this window size: as wide as the window, and every visible control the topmost
    // element at its centre (one line of tools had slid under the 3D canvas in a 640 px window)
    res.layout = await page.evaluate(() => {
      const hidden = [];
      for (const el of document.querySelectorAll('header, main, footer, #view-tools input, #view-tools button, footer button, footer input')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue; // (not shown in this kind of page)
        const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        if (el.tagName !== 'HEADER' && el.tagName !== 'MAIN' && el.tagName !== 'FOOTER' && !(top === el || el.contains(top))) {
          hidden.push(`#${el.id || el.tagName} under ${top ? top.id || top.tagName : 'nothing'}`);
        }
        if (r.right > window.innerWidth + 0.5) hidden.push(`${el.id || el.tagName} ends at ${r.right} px`);
      }
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, hidden };
    });
    res.samples = [];
    if (spec.kind === 'video') {
      for (const [i, t] of (spec.times || []).entries()) {
        const ts = Date.now();
        const state = await page.evaluate((tt) => window.wbcapView.seek(tt), t);
        const sample = { t, state, seekMs: Date.now() - ts, vertices: {}, bones: {}, pixels: {} };
        for (const tr of state.tracks) {
          const v = await page.evaluate((id) => window.wbcapView.skinnedVertices(id), tr.id);
          if (v) {
            const file = join(job.out, `${spec.name}_t${i}_track${tr.id}.f32`);
            writeFileSync(file, Buffer.from(v.data, 'base64'));
            sample.vertices[tr.id] = file;
            sample.bones[tr.id] = await page.evaluate((id) => window.wbcapView.bonePosition(id, 'pelvis'), tr.id);
            sample.pixels[tr.id] = await page.evaluate((id) => window.wbcapView.sourcePixels(id), tr.id);
          }
        }
        const px = await page.evaluate(() => window.wbcapView.videoPixels());
        if (px) {
          sample.video = { file: join(job.out, `${spec.name}_t${i}_video.rgba`), width: px.width, height: px.height };
          writeFileSync(sample.video.file, Buffer.from(px.data, 'base64'));
        }
        sample.params = await page.evaluate(() => window.wbcapView.params());
        sample.timeText = await page.textContent('#time');
        res.samples.push(sample);
      }
    }
    if (spec.kind === 'video' && spec.controls !== false) {
      // the controls: next-frame button, then play and pause
      const before = await page.evaluate(() => window.wbcapView.seek(window.wbcapView.manifest.frame_times[1]));
      const ts = Date.now();
      await page.click('#next');
      await page.waitForFunction((k) => { const s = window.wbcapView.state(); return s.frame !== k && !s.seeking; }, before.frame);
      res.afterNext = { before, after: await page.evaluate(() => window.wbcapView.state()), ms: Date.now() - ts };
      // the keys after that click (the button must not keep them): → steps on, ← back
      const stepped = async (key) => {
        const k = (await page.evaluate(() => window.wbcapView.state())).frame;
        await page.keyboard.press(key);
        await page.waitForFunction((f) => { const s = window.wbcapView.state(); return s.frame !== f && !s.seeking; }, k,
                                   { timeout: 10000 }).catch(() => null);
        return page.evaluate(() => window.wbcapView.state());
      };
      res.afterKeys = { right: await stepped('ArrowRight'), left: await stepped('ArrowLeft') };
      // and after a click on a track's box (its clicks stop at the list): hidden, shown again, then →
      await page.click('#tracks li input');
      await page.click('#tracks li input');
      res.afterKeys.afterBox = await stepped('ArrowRight');
      // and after a click on the scrub bar (a range input, which kept space from the page: a trial)
      await page.click('#scrub');
      await page.waitForFunction(() => !window.wbcapView.state().seeking);
      await page.keyboard.press('Space');
      await page.waitForFunction(() => window.wbcapView.state().playing, null, { timeout: 5000 }).catch(() => null);
      res.afterKeys.spaceAfterScrub = await page.evaluate(() => window.wbcapView.state());
      await page.evaluate(() => { if (window.wbcapView.state().playing) document.getElementById('play').click(); });
      await page.waitForFunction(() => { const s = window.wbcapView.state(); return !s.playing && !s.seeking; });
      if (spec.play_ms) {
        await page.evaluate(() => window.wbcapView.seek(window.wbcapView.manifest.frame_times[0]));
        await page.click('#play');
        await page.waitForTimeout(spec.play_ms);
        res.whilePlaying = await page.evaluate(() => window.wbcapView.state());
        // pause (a toggle): only if still playing, since a short clip may have played to its end.
        // Checked and clicked in one turn of the page's event loop: checked from here, the clip
        // could end between the check and the click (a loaded machine), and the click restarted it.
        await page.evaluate(() => { if (window.wbcapView.state().playing) document.getElementById('play').click(); });
        await page.waitForFunction(() => { const s = window.wbcapView.state(); return !s.playing && !s.seeking; });
        res.afterPause = await page.evaluate(() => window.wbcapView.state());
      }
    }
    if (spec.kind !== 'video') {
      const state = await page.evaluate(() => window.wbcapView.state());
      const sample = { state, vertices: {} };
      for (const p of state.people) {
        const v = await page.evaluate((id) => window.wbcapView.skinnedVertices(id), p.id);
        const file = join(job.out, `${spec.name}_person${p.id}.f32`);
        writeFileSync(file, Buffer.from(v.data, 'base64'));
        sample.vertices[p.id] = file;
      }
      sample.params = await page.evaluate(() => window.wbcapView.params());
      res.samples.push(sample);
    }
    if (spec.screenshot) {
      res.screenshot = join(job.out, `${spec.name}_view.png`);
      res.screenshotState = await screenshot(page, spec, res.screenshot);
    }
    if (spec.page_screenshot) {
      const t = spec.page_screenshot.time;
      if (t !== undefined && t !== null) await page.evaluate((tt) => window.wbcapView.seek(tt), t);
      const id = spec.page_screenshot.select;
      if (id !== undefined && id !== null) await page.evaluate((i) => { window.wbcapView.select(i); return window.wbcapView.params(); }, id);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      res.pageScreenshot = join(job.out, `${spec.name}_page.png`);
      res.pageScreenshotState = await page.evaluate(() => window.wbcapView.state());
      await page.screenshot({ path: res.pageScreenshot });
    }
}
