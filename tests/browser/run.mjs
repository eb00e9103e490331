// Real-browser tests of the web app and the JS library: Debian's Chromium, driven by
// playwright-core, against `dist/` (trunk's build) served on 127.0.0.1 by this script.
//
// The whole suite runs twice: with WebGPU (Chromium's software SwiftShader adapter, enabled by
// --enable-unsafe-webgpu) and without it (no adapter: the CPU fallback). Browser results are
// compared with the native CLI's on the same input.
//
// Env: WEBSR_DIST (default dist), WEBSR_BIN (native websr CLI, required), CHROMIUM
// (default /usr/bin/chromium), WEBSR_MODES (default "webgpu,cpu").
// Prints cargo's "test result:" line so scripts/test.sh sums it with the Rust tests.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodePng, psnr, syntheticPng } from './png.mjs';
import { serve } from '../../scripts/static-server.mjs';
import { CHROMIUM_ARGS, Suite, assert } from './harness.mjs';

const DIST = path.resolve(process.env.WEBSR_DIST || 'dist');
const BIN = process.env.WEBSR_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODES = (process.env.WEBSR_MODES || 'webgpu,cpu').split(',');
const LONG = 600_000; // SwiftShader and single-threaded wasm are slow; compile times vary.

if (!BIN || !fs.existsSync(BIN)) throw new Error(`WEBSR_BIN must point at the native websr CLI (got ${BIN})`);
if (!fs.existsSync(path.join(DIST, 'index.html'))) throw new Error(`${DIST}/index.html missing: build the app first`);

const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];
const MANIFEST = JSON.parse(fs.readFileSync(path.join(DIST, 'models/manifest.json'), 'utf8'));
/** The manifest's default model at a scale: the app opens on it (x4). */
const defaultModel = (scale) => MANIFEST.models.find((m) => m.default && m.scale === scale).name;
const DEFAULT_X4 = defaultModel(4);
/** The shipped diffusion model the browser is checked against the CLI with. */
const DIFFUSION_MODEL = 'diwa-yoda-x4';
/** The diffusion model with recorded sampling defaults (steps, strength) that the page must use. */
const DETAIL_MODEL = 'diwa-wavelr-x4';

/** The `default_sampling` of a shipped diffusion model, from its safetensors header. */
function defaultSampling(name) {
  const bytes = fs.readFileSync(path.join(DIST, 'models', `${name}.safetensors`));
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
  return JSON.parse(header.__metadata__.spec).default_sampling;
}
/** A model no other test loads here, served tampered: it must not be in the cache yet. */
const TAMPERED_MODEL = 'wavelr-x4';
/** The note of 'auto' over a software WebGPU adapter (SwiftShader in headless Chromium). */
const SOFTWARE_NOTE = /^WebGPU adapter ".+" is a software renderer, slower than the CPU path here; running on the CPU$/;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'websr-browser-'));

/** The native CLI's result for the same PNG bytes (`extra`: more CLI flags, e.g. --steps). */
function nativeUpscale(name, png, model, extra = []) {
  const input = path.join(tmp, `${name}.png`);
  const output = path.join(tmp, `${name}-${model}-native.png`);
  fs.writeFileSync(input, png);
  if (!fs.existsSync(output)) execFileSync(BIN, ['upscale', input, '-o', output, '--model', model, ...extra], { stdio: 'pipe' });
  return decodePng(fs.readFileSync(output));
}

async function upload(page, name, buffer, mimeType = 'image/png') {
  const before = await page.locator('li[data-testid=item]').count();
  await page.setInputFiles('[data-testid=file]', { name, mimeType, buffer });
  return page.locator('li[data-testid=item]').nth(before);
}

async function waitStatus(item, statuses) {
  const sel = statuses.map((s) => `[data-status="${s}"]`).join(',');
  await item.page().waitForFunction(
    ([el, sel]) => el.matches(sel), [await item.elementHandle(), sel], { timeout: LONG, polling: 100 });
  return item.getAttribute('data-status');
}

/** The PNG the app offers for download, as bytes. */
async function downloadedPng(item) {
  const href = await item.locator('[data-testid=download]').getAttribute('href');
  const b64 = await item.page().evaluate(async (url) => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }, href);
  return Buffer.from(b64, 'base64');
}

/** Collects what a person would see as a broken page: failed requests, HTTP errors, console
 *  errors and uncaught exceptions. */
function watchLoadProblems(page) {
  const problems = [];
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  page.on('requestfailed', (r) => problems.push(`failed ${r.url()}: ${r.failure()?.errorText}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return problems;
}

/** Waits until the app says its model is loaded ("... ready") or could not be ("not loaded"). */
async function waitModelStatus(page) {
  await page.waitForFunction(() => /ready|not loaded/.test(document.querySelector('[data-testid=model-status]')?.textContent),
    null, { timeout: LONG });
  return page.textContent('[data-testid=model-status]');
}

async function openApp(browser, base, query = '') {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  await page.goto(`${base}/${query}`);
  const status = await waitModelStatus(page);
  assert(/ready/.test(status), `${status}: ${await page.textContent('[data-testid=message]')}`);
  return page;
}

/** The origin of a request's URL, or its scheme for data:/blob: (which reach no server). */
function requestOrigin(url) {
  const u = new URL(url);
  if (u.protocol === 'data:') return 'data:';
  if (u.protocol === 'blob:') return new URL(u.pathname).origin; // blob:ORIGIN/uuid
  return u.origin;
}

const suite = new Suite();
const test = (name, fn) => suite.test(name, fn);

const server = await serve(DIST);
const base = `http://127.0.0.1:${server.address().port}`;
try {
  for (const mode of MODES) {
    const userDataDir = fs.mkdtempSync(path.join(tmp, `profile-${mode}-`));
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...(mode === 'webgpu' ? WEBGPU_ARGS : [])],
    });
    const browser = { newPage: () => context.newPage() };
    const t = (name, fn) => test(`[${mode}] ${name}`, fn);
    // The backend the tests ask for: 'auto' would put the app on the CPU over SwiftShader (a
    // software adapter), so the WebGPU run asks for WebGPU; the CPU run checks auto's fallback.
    const BACKEND = mode === 'webgpu' ? 'webgpu' : 'auto';
    /** The app's query string with the mode's backend added to `params`. */
    const q = (params = {}) => `?${new URLSearchParams({ ...params, backend: BACKEND })}`;
    let page;

    await t('the app starts on the expected backend and says why', async () => {
      page = await openApp(browser, base, q());
      const backend = await page.getAttribute('[data-testid=backend]', 'data-backend');
      assert(backend === mode, `backend ${backend}, expected ${mode}`);
      const note = await page.textContent('[data-testid=backend-note]');
      const title = await page.getAttribute('[data-testid=backend]', 'title');
      console.log(`     ${await page.textContent('[data-testid=backend]')}: ${title}`);
      assert(Number(await page.getAttribute('[data-testid=backend]', 'data-auto-tile')) >= 16, 'an automatic tile size');
      if (mode === 'cpu') assert(/WebGPU/.test(note), `CPU fallback must say why, got "${note}"`);
      const cached = await page.getAttribute('[data-testid=model-status]', 'data-from-cache');
      assert(cached === 'false', 'first visit downloads the model');
      const selected = await page.inputValue('[data-testid=model]');
      assert(selected === DEFAULT_X4, `the app opened on ${selected}, the x4 default is ${DEFAULT_X4}`);
    });

    await t('a plain load of each page requests nothing that fails and logs no error', async () => {
      for (const [file, ready] of [[q(), '[data-testid=model-status]'], ['federated.html', 'body']]) {
        const p = await browser.newPage();
        const problems = watchLoadProblems(p);
        await p.goto(`${base}/${file}`, { waitUntil: 'load' });
        if (ready !== 'body') {
          await p.waitForFunction(() => /ready/.test(document.querySelector('[data-testid=model-status]')?.textContent),
            null, { timeout: LONG });
        } else {
          await p.waitForSelector(ready);
        }
        await p.waitForLoadState('networkidle');
        await p.close();
        assert(problems.length === 0, `/${file}: ${problems.join('; ')}`);
      }
    });

    if (mode === 'cpu') {
      await t('a low-quality JPEG gets the photo model suggested (quality read from its tables), a good one not', async () => {
        /** A JPEG the browser itself encodes (libjpeg tables) at `quality` in 0..1. */
        const jpeg = async (quality) => Buffer.from(await page.evaluate(async (q) => {
          const c = new OffscreenCanvas(64, 48);
          const ctx = c.getContext('2d');
          const g = ctx.createLinearGradient(0, 0, 64, 48);
          g.addColorStop(0, '#c33');
          g.addColorStop(1, '#3c9');
          ctx.fillStyle = g;
          ctx.fillRect(0, 0, 64, 48);
          ctx.fillStyle = '#fff';
          ctx.fillRect(20, 10, 9, 25);
          const bytes = new Uint8Array(await (await c.convertToBlob({ type: 'image/jpeg', quality: q })).arrayBuffer());
          let s = '';
          for (const b of bytes) s += String.fromCharCode(b);
          return btoa(s);
        }, quality), 'base64');
        const low = await upload(page, 'phone.jpg', await jpeg(0.4), 'image/jpeg');
        assert((await waitStatus(low, ['done', 'error'])) === 'done', await low.textContent());
        const note = low.locator('[data-testid=photo-suggestion]');
        assert(await note.count() === 1, `no suggestion for a quality-40 JPEG: ${await low.textContent()}`);
        const quality = Number(await note.getAttribute('data-quality'));
        assert(quality >= 38 && quality <= 42, `estimated quality ${quality}, saved at 40`);
        const good = await upload(page, 'camera.jpg', await jpeg(0.95), 'image/jpeg');
        assert((await waitStatus(good, ['done', 'error'])) === 'done', await good.textContent());
        assert(await good.locator('[data-testid=photo-suggestion]').count() === 0, 'no suggestion at quality 95');
        try {
          // The redone item appears once the photo model has loaded: wait for it, so the status
          // read below is its own and not the last item's before it.
          const items = await page.locator('li[data-testid=item]').count();
          await low.locator('[data-testid=use-photo-model]').click();
          await page.waitForFunction((n) => document.querySelectorAll('li[data-testid=item]').length > n, items, { timeout: LONG });
          const redone = page.locator('li[data-testid=item]').nth(items);
          assert((await waitStatus(redone, ['done', 'error'])) === 'done', await redone.textContent());
          const model = await page.inputValue('[data-testid=model]');
          assert(/photo/.test(model), `redone with ${model}`);
          assert(await redone.locator('[data-testid=photo-suggestion]').count() === 0, 'no suggestion with the photo model');
        } finally {
          // Back to the default for the tests that follow, even when an assertion above failed
          // (the click switched the app to the photo model).
          await page.selectOption('[data-testid=model]', DEFAULT_X4);
          await page.waitForFunction((m) => document.querySelector('[data-testid=model-status]')?.textContent.startsWith(`${m} ready`),
            DEFAULT_X4, { timeout: LONG });
        }
      });
    }

    await t('an uploaded image comes back x4 and matches the native CLI (PSNR >= 45 dB)', async () => {
      const png = syntheticPng(64, 48, { seed: 7 });
      const item = await upload(page, 'photo.png', png);
      assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
      const out = decodePng(await downloadedPng(item));
      assert(out.width === 256 && out.height === 192, `size ${out.width}x${out.height}`);
      const p = psnr(out, nativeUpscale('photo', png, DEFAULT_X4));
      console.log(`     browser vs native: ${p.toFixed(2)} dB`);
      assert(p >= 45, `PSNR ${p.toFixed(2)} dB < 45`);
      assert(await page.isVisible('[data-testid=viewer]'), 'the compare view opens');
    });

    await t('alpha survives and matches the native CLI', async () => {
      const png = syntheticPng(40, 30, { alpha: true, seed: 3 });
      const item = await upload(page, 'logo.png', png);
      assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
      const out = decodePng(await downloadedPng(item));
      const native = nativeUpscale('logo', png, DEFAULT_X4);
      assert(out.channels === 4, 'output keeps an alpha channel');
      const pa = psnr(out, native, [3]);
      const prgb = psnr(out, native);
      assert(pa >= 45 && prgb >= 45, `alpha ${pa.toFixed(2)} dB, rgb ${prgb.toFixed(2)} dB`);
    });

    await t('a non-image file gets a clear message and the app keeps working', async () => {
      const bad = await upload(page, 'notes.txt', Buffer.from('this is not an image\n'), 'text/plain');
      assert((await waitStatus(bad, ['done', 'error'])) === 'error', 'a text file must fail');
      const msg = await page.textContent('[data-testid=message]');
      assert(/not an image/.test(msg), `message: "${msg}"`);
      const good = await upload(page, 'after.png', syntheticPng(24, 20, { seed: 9 }));
      assert((await waitStatus(good, ['done', 'error'])) === 'done', 'next image works');
    });

    await t('an image whose result would not fit in memory is refused with a clear message', async () => {
      // 2000x1500 at x4 is 48 MP, above the runtime's 32 MP output limit.
      const item = await upload(page, 'huge.png', syntheticPng(2000, 1500, { seed: 13 }));
      assert((await waitStatus(item, ['done', 'error'])) === 'error', 'a 48 MP result must be refused');
      const msg = await page.textContent('[data-testid=message]');
      assert(/too large for this device/.test(msg) && /8000x6000/.test(msg), `message: "${msg}"`);
      const next = await upload(page, 'fine.png', syntheticPng(16, 16, { seed: 4 }));
      assert((await waitStatus(next, ['done', 'error'])) === 'done', 'the next image works');
    });

    await t('a large image goes through tiling and still matches the native CLI', async () => {
      const tiled = await openApp(browser, base, q({ tile: 48 }));
      const png = syntheticPng(160, 120, { seed: 11 });
      const item = await upload(tiled, 'large.png', png);
      assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
      const tiles = Number(await item.getAttribute('data-total'));
      assert(tiles >= 6, `expected at least 6 tiles, got ${tiles}`);
      const out = decodePng(await downloadedPng(item));
      const p = psnr(out, nativeUpscale('large', png, DEFAULT_X4));
      console.log(`     ${tiles} tiles, browser vs native: ${p.toFixed(2)} dB`);
      assert(p >= 45, `PSNR ${p.toFixed(2)} dB < 45`);
      await tiled.close();
    });

    await t('cancel stops between tiles and the next image still works', async () => {
      const slow = await openApp(browser, base, q({ tile: 16 }));
      const item = await upload(slow, 'big.png', syntheticPng(192, 160, { seed: 5 }));
      await slow.waitForFunction((el) => Number(el.dataset.done) >= 1, await item.elementHandle(), { timeout: LONG, polling: 50 });
      await item.locator('[data-testid=cancel]').click();
      assert((await waitStatus(item, ['cancelled', 'done', 'error'])) === 'cancelled', 'status after cancel');
      const done = Number(await item.getAttribute('data-done'));
      const total = Number(await item.getAttribute('data-total'));
      assert(done < total, `cancelled after ${done}/${total} tiles`);
      const next = await upload(slow, 'small.png', syntheticPng(20, 16, { seed: 2 }));
      assert((await waitStatus(next, ['done', 'error'])) === 'done', 'an image after a cancel works');
      await slow.close();
    });

    await t('a diffusion upscale shows previews, matches the native CLI (PSNR >= 40 dB) and cancels', async () => {
      const dpage = await openApp(browser, base, q({ model: DIFFUSION_MODEL }));
      assert(!(await dpage.locator('[data-testid=diffusion-controls]').isHidden()), 'diffusion controls shown');
      assert(await dpage.locator('[data-testid=yoda]').isChecked(), 'a YODA-trained model starts with YODA on');
      await dpage.fill('[data-testid=steps]', '6');
      await dpage.fill('[data-testid=seed]', '7');
      const png = syntheticPng(24, 20, { seed: 9 });
      const item = await upload(dpage, 'small.png', png);
      assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
      const out = decodePng(await downloadedPng(item));
      assert(out.width === 96 && out.height === 80, `size ${out.width}x${out.height}`);
      const previews = Number(await item.getAttribute('data-previews'));
      assert(previews >= 3, `${previews} previews for 6 steps`);
      const native = nativeUpscale('diffusion', png, DIFFUSION_MODEL, ['--steps', '6', '--seed', '7', '--yoda']);
      const p = psnr(out, native);
      console.log(`     ${previews} previews, browser vs native: ${p.toFixed(2)} dB`);
      assert(p >= 40, `browser vs native diffusion: ${p.toFixed(2)} dB`);

      await dpage.fill('[data-testid=steps]', '200');
      const slow = await upload(dpage, 'slow.png', syntheticPng(32, 32, { seed: 3 }));
      await dpage.waitForFunction((el) => Number(el.dataset.done) >= 1, await slow.elementHandle(), { timeout: LONG, polling: 50 });
      await slow.locator('[data-testid=cancel]').click();
      assert((await waitStatus(slow, ['cancelled', 'done', 'error'])) === 'cancelled', 'status after cancel');
      assert(Number(await slow.getAttribute('data-done')) < 200, 'cancelled before the last step');
      await dpage.close();
    });

    await t('a diffusion model samples with its own steps and strength, as the CLI does without flags', async () => {
      const { steps, strength } = defaultSampling(DETAIL_MODEL);
      const dpage = await openApp(browser, base, q({ model: DETAIL_MODEL }));
      assert(Number(await dpage.inputValue('[data-testid=steps]')) === steps, `steps ${await dpage.inputValue('[data-testid=steps]')} vs ${steps}`);
      assert(Number(await dpage.inputValue('[data-testid=strength]')) === strength, `strength ${await dpage.inputValue('[data-testid=strength]')} vs ${strength}`);
      const png = syntheticPng(24, 20, { seed: 4 });
      const item = await upload(dpage, 'small.png', png);
      assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
      const out = decodePng(await downloadedPng(item));
      const native = nativeUpscale('detail', png, DETAIL_MODEL);
      const p = psnr(out, native);
      console.log(`     ${steps} steps from strength ${strength}: browser vs native ${p.toFixed(2)} dB`);
      assert(p >= 40, `browser vs native: ${p.toFixed(2)} dB`);
      await dpage.close();
    });

    await t('the JS library upscales ImageData on its own (the README example)', async () => {
      // No model named: the library loads the manifest's default for the scale.
      const defaultX2 = defaultModel(2);
      const r = await page.evaluate(async ([mode, backend]) => {
        const { WebSR } = await import('/websr.mjs');
        const sr = await WebSR.create({ scale: 2, backend });
        const data = new ImageData(20, 16);
        for (let i = 0; i < data.data.length; i++) data.data[i] = (i * 37) % 256 | (i % 4 === 3 ? 255 : 0);
        const steps = [];
        const out = await sr.upscale(data, { scale: 2, onProgress: (p) => steps.push(p) });
        let wrongScale = '';
        try {
          await sr.upscale(data, { scale: 4 });
        } catch (e) {
          wrongScale = e.name;
        }
        const info = sr.info;
        sr.dispose();
        return { w: out.imageData.width, h: out.imageData.height, type: out.png.type, steps: steps.length,
          backend: info.backend, model: info.model, wrongScale, mode };
      }, [mode, BACKEND]);
      assert(r.model === defaultX2, `loaded ${r.model}, the x2 default is ${defaultX2}`);
      assert(r.w === 40 && r.h === 32 && r.type === 'image/png', JSON.stringify(r));
      assert(r.backend === mode && r.steps >= 1 && r.wrongScale === 'ModelError', JSON.stringify(r));
    });

    if (mode === 'cpu') {
      await t('the CPU pool gives the bytes of one worker, SIMD those of the portable kernel, relaxed SIMD (where the browser has it) within a level', async () => {
        // Same tile plan everywhere (tileSize 24: 6 tiles, more than the pool's minimum of 2), so
        // only who computes a tile differs: a 2-worker pool, one worker, one on the plain-SIMD
        // build, one without SIMD. Chromium has relaxed SIMD, so the default is its build.
        const r = await page.evaluate(async () => {
          const { WebSR } = await import('/websr.mjs');
          const data = new ImageData(40, 52);
          for (let i = 0; i < data.data.length; i++) data.data[i] = i % 4 === 3 ? 255 : (i * 2654435761) >>> 24;
          const run = async (options) => {
            const sr = await WebSR.create({ backend: 'cpu', ...options });
            const steps = [];
            const out = await sr.upscale(data, { tileSize: 24, onProgress: (p) => steps.push(p.done) });
            const workers = sr.workerCount;
            const kernel = sr.info.cpuKernel;
            sr.dispose();
            return { bytes: Array.from(out.imageData.data), steps, workers, tiles: out.tiles, kernel };
          };
          const pool = await run({ workers: 2 });
          const one = await run({ workers: 1 });
          const plain = await run({ workers: 1, relaxedSimd: false });
          const scalar = await run({ workers: 1, relaxedSimd: false, cpuSimd: false });
          const differ = (a, b) => a.bytes.findIndex((v, i) => v !== b.bytes[i]);
          const maxDiff = (a, b) => a.bytes.reduce((m, v, i) => Math.max(m, Math.abs(v - b.bytes[i])), 0);
          return { workers: pool.workers, steps: pool.steps, tiles: pool.tiles, oneTiles: one.tiles,
            poolVsOne: differ(pool, one), simdVsScalar: differ(plain, scalar), n: one.bytes.length,
            kernels: [pool.kernel, one.kernel, plain.kernel, scalar.kernel].join(),
            relaxedVsPlain: maxDiff(one, plain) };
        });
        assert(r.workers === 2, `pool of ${r.workers}`);
        assert(r.tiles === r.oneTiles && r.tiles >= 4, `tiles: pool ${r.tiles}, one worker ${r.oneTiles}`);
        assert(r.steps.join() === [...Array(r.tiles).keys()].map((i) => i + 1).join(), `progress ${r.steps}`);
        assert(r.kernels === 'relaxed-simd,relaxed-simd,simd128,portable', `kernels: ${r.kernels}`);
        assert(r.poolVsOne === -1, `pool and one worker differ at byte ${r.poolVsOne} of ${r.n}`);
        assert(r.simdVsScalar === -1, `SIMD and portable kernels differ at byte ${r.simdVsScalar} of ${r.n}`);
        // Fused multiply-adds round once instead of twice: a level at most, never more.
        assert(r.relaxedVsPlain <= 1, `relaxed SIMD is ${r.relaxedVsPlain} levels from plain SIMD`);
      });
    }

    if (mode === 'cpu') {
      await t('a diffusion upscale in tiles is shared by the pool with the bytes of one worker, cancels, and matches the CLI', async () => {
        // diffusionTile 16 cuts a 44x36 input into several tiles; YODA is on (the model's
        // training), so the tasks carry slices of the whole image's importance map. One worker
        // samples the tiles in place (the native path); the pool hands them out as tasks.
        const png = syntheticPng(44, 36, { seed: 12 });
        const r = await page.evaluate(async ([model, bytes]) => {
          const { WebSR } = await import('/websr.mjs');
          const blob = new Blob([new Uint8Array(bytes)], { type: 'image/png' });
          const run = async (workers) => {
            const sr = await WebSR.create({ backend: 'cpu', model, workers });
            const progress = [];
            const out = await sr.upscale(blob, { steps: 2, seed: 3, diffusionTile: 16, onProgress: (p) => progress.push(`${p.done}/${p.total}`) });
            const w = sr.workerCount;
            sr.dispose();
            return { bytes: Array.from(out.imageData.data), png: Array.from(new Uint8Array(await out.png.arrayBuffer())), progress, workers: w, tiles: out.tiles, steps: out.steps };
          };
          const pool = await run(2);
          const one = await run(1);
          // Cancel mid-way: every worker stops between steps; the pool then still works.
          const sr = await WebSR.create({ backend: 'cpu', model, workers: 2 });
          const controller = new AbortController();
          let cancelledAfter = 0;
          let cancel = '';
          try {
            await sr.upscale(blob, { steps: 200, seed: 3, diffusionTile: 16, signal: controller.signal,
              onProgress: (p) => { cancelledAfter = p.done; if (p.done >= 2) controller.abort(); } });
          } catch (e) {
            cancel = e.name;
          }
          const again = await sr.upscale(blob, { steps: 2, seed: 3, diffusionTile: 16 });
          sr.dispose();
          return { workers: pool.workers, tiles: pool.tiles, steps: pool.steps, oneSteps: one.steps,
            progress: pool.progress, oneProgress: one.progress, png: pool.png,
            differ: pool.bytes.findIndex((v, i) => v !== one.bytes[i]), n: one.bytes.length,
            cancel, cancelledAfter, againDiffers: Array.from(again.imageData.data).findIndex((v, i) => v !== one.bytes[i]) };
        }, [DIFFUSION_MODEL, Array.from(png)]);
        assert(r.workers === 2, `pool of ${r.workers}`);
        assert(r.tiles >= 4 && r.steps === 2 * r.tiles && r.oneSteps === r.steps, `tiles ${r.tiles}, steps ${r.steps} (one worker ${r.oneSteps})`);
        assert(r.progress.at(-1) === `${r.steps}/${r.steps}` && r.oneProgress.at(-1) === r.progress.at(-1), `progress ${r.progress} / ${r.oneProgress}`);
        assert(r.differ === -1, `pool and one worker differ at byte ${r.differ} of ${r.n}`);
        assert(r.cancel === 'AbortError' && r.cancelledAfter < 50, `cancel: ${r.cancel} after ${r.cancelledAfter} steps (the workers must stop between steps, not after their tiles)`);
        assert(r.againDiffers === -1, `after a cancel the pool's image differs at byte ${r.againDiffers}`);
        const native = nativeUpscale('diffusion-tiled', png, DIFFUSION_MODEL, ['--steps', '2', '--seed', '3', '--yoda', '--diffusion-tile', '16']);
        const p = psnr(decodePng(Buffer.from(r.png)), native);
        console.log(`     ${r.tiles} tiles on 2 workers = 1 worker; cancelled after ${r.cancelledAfter} steps; browser vs native ${p.toFixed(2)} dB`);
        assert(p >= 40, `browser vs native tiled diffusion: ${p.toFixed(2)} dB`);
      });
    }

    if (mode === 'webgpu') {
      await t("'auto' runs on the CPU over a software WebGPU adapter and says so; 'webgpu' still takes it", async () => {
        // No backend in the URL: the app's default, 'auto'. Headless Chromium's only adapter is
        // SwiftShader, which is about 10x slower than the wasm CPU path for our models.
        const p = await openApp(browser, base);
        const backend = await p.getAttribute('[data-testid=backend]', 'data-backend');
        const note = await p.textContent('[data-testid=backend-note]');
        console.log(`     auto: ${backend}; "${note}"`);
        assert(backend === 'cpu', `auto chose ${backend} over a software adapter`);
        assert(SOFTWARE_NOTE.test(note), `note: "${note}"`);
        assert(await p.isVisible('[data-testid=backend-note]'), 'the note is shown on the page');
        // The library and the federated client choose the same way (one chooseBackend).
        const r = await p.evaluate(async () => {
          const { WebSR } = await import('/websr.mjs');
          const { FederatedClient } = await import('/websr-federated.mjs');
          const out = {};
          for (const backend of ['auto', 'webgpu']) {
            const sr = await WebSR.create({ scale: 4, backend });
            out[`WebSR ${backend}`] = { backend: sr.info.backend, note: sr.info.note, adapter: sr.info.adapter };
            sr.dispose();
            const fl = await FederatedClient.create({ server: location.origin, backend });
            out[`FederatedClient ${backend}`] = { backend: fl.info.backend, note: fl.info.note, adapter: fl.info.adapter };
            fl.dispose();
          }
          return out;
        });
        for (const api of ['WebSR', 'FederatedClient']) {
          const auto = r[`${api} auto`];
          const webgpu = r[`${api} webgpu`];
          assert(auto.backend === 'cpu' && SOFTWARE_NOTE.test(auto.note), `${api} auto: ${JSON.stringify(auto)}`);
          assert(webgpu.backend === 'webgpu' && webgpu.note === '', `${api} webgpu: ${JSON.stringify(webgpu)}`);
          assert(/\(software\)$/.test(webgpu.adapter), `${api} webgpu adapter: ${webgpu.adapter}`);
        }
        await p.close();
        // The training page shows the same note (it stops at joining: no aggregator here).
        const fl = await browser.newPage();
        await fl.goto(`${base}/federated.html?server=${encodeURIComponent(base)}`);
        await fl.setInputFiles('[data-testid=fl-files]', { name: 'a.png', mimeType: 'image/png', buffer: syntheticPng(64, 64, { seed: 1 }) });
        await fl.click('[data-testid=fl-start]');
        await fl.waitForSelector('[data-testid=fl-backend][data-backend]', { timeout: LONG });
        const flBackend = await fl.getAttribute('[data-testid=fl-backend]', 'data-backend');
        const flNote = await fl.textContent('[data-testid=fl-backend-note]');
        assert(flBackend === 'cpu' && SOFTWARE_NOTE.test(flNote), `training page: ${flBackend}, "${flNote}"`);
        assert(await fl.isVisible('[data-testid=fl-backend-note]'), 'the note is shown on the training page');
        await fl.close();
      });
    }

    await t('a tampered model download is refused with its message and nothing is cached', async () => {
      const entry = MANIFEST.models.find((m) => m.name === TAMPERED_MODEL);
      const url = `${base}/models/${entry.file}`;
      // One flipped byte in the last weight: still well-formed safetensors, only the SHA-256 differs.
      const tampered = Buffer.from(fs.readFileSync(path.join(DIST, 'models', entry.file)));
      tampered[tampered.length - 1] ^= 0x40;
      let served = 0;
      const p = await browser.newPage();
      await p.route(url, (route) => {
        served += 1;
        return route.fulfill({ status: 200, contentType: 'application/octet-stream', body: tampered });
      });
      const cachedUrls = () => p.evaluate(async () => (await (await caches.open('websr-models-v1')).keys()).map((r) => r.url));
      await p.goto(`${base}/${q({ model: TAMPERED_MODEL })}`);
      const status = await waitModelStatus(p);
      const msg = await p.textContent('[data-testid=message]');
      console.log(`     ${msg}`);
      assert(served >= 1, 'the tampered file was not requested');
      assert(/not loaded/.test(status), `model status: "${status}"`);
      const expected = `${entry.file} is corrupted (SHA-256 `;
      assert(msg.startsWith(`The model could not be loaded: ${expected}`) && msg.includes(`expected ${entry.sha256.slice(0, 12)}`),
        `message: "${msg}"`);
      assert(await p.isVisible('[data-testid=message]'), 'the message is shown');
      // The library rejects with a WebSRError named ModelError, carrying the same message.
      const api = await p.evaluate(async (model) => {
        const { WebSR, WebSRError } = await import('/websr.mjs');
        try {
          await WebSR.create({ model });
          return { loaded: true };
        } catch (e) {
          return { isWebSRError: e instanceof WebSRError, name: e.name, message: e.message };
        }
      }, TAMPERED_MODEL);
      assert(api.isWebSRError && api.name === 'ModelError' && api.message.startsWith(expected), `library: ${JSON.stringify(api)}`);
      assert(!(await cachedUrls()).includes(url), `${url} was cached`);

      // The real file afterwards: downloaded (nothing stale in the cache), checked and cached.
      await p.unroute(url);
      await p.reload();
      const after = await waitModelStatus(p);
      assert(/ready/.test(after), `after the tamper: "${after}": ${await p.textContent('[data-testid=message]')}`);
      const fromCache = await p.getAttribute('[data-testid=model-status]', 'data-from-cache');
      assert(fromCache === 'false', `the untampered load came from the cache (${fromCache})`);
      assert((await cachedUrls()).includes(url), `${url} is not cached after a good download`);
      await p.close();
    });

    await t('loading the model and upscaling makes no request to another origin', async () => {
      // The context sees every request: the page's, and the worker's (wasm, ...).
      const urls = [];
      const record = (r) => urls.push(r.url());
      context.on('request', record);
      const p = await browser.newPage();
      try {
        // An empty model cache first, so the model is downloaded while we watch.
        await p.goto(`${base}/models/manifest.json`);
        await p.evaluate(() => caches.delete('websr-models-v1'));
        urls.length = 0;
        await p.goto(`${base}/${q()}`);
        const status = await waitModelStatus(p);
        assert(/ready/.test(status), status);
        assert((await p.getAttribute('[data-testid=model-status]', 'data-from-cache')) === 'false', 'the model was downloaded');
        const item = await upload(p, 'private.png', syntheticPng(24, 20, { seed: 21 }));
        assert((await waitStatus(item, ['done', 'error'])) === 'done', await item.textContent());
        await p.waitForLoadState('networkidle');
      } finally {
        context.off('request', record);
        await p.close();
      }
      const seen = (re) => urls.some((u) => re.test(u));
      assert(seen(/\/websr(-relaxed)?_bg\.wasm$/) && seen(/\.safetensors$/) && seen(/\/models\/manifest\.json$/),
        `the recording missed the wasm or the model: ${urls.join(' ')}`);
      const foreign = urls.filter((u) => !['data:', base].includes(requestOrigin(u)));
      console.log(`     ${urls.length} requests, ${foreign.length} to another origin`);
      assert(foreign.length === 0, `requests to another origin: ${foreign.join(' ')}`);
    });

    await t('the second visit loads the model from the cache', async () => {
      await page.reload();
      await page.waitForFunction(() => /ready/.test(document.querySelector('[data-testid=model-status]')?.textContent),
        null, { timeout: LONG });
      const cached = await page.getAttribute('[data-testid=model-status]', 'data-from-cache');
      assert(cached === 'true', `data-from-cache=${cached}`);
    });

    await context.close();
  }
} finally {
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}

suite.finish('browser suite');
