// End-to-end federated training: the real `websr-aggregator` binary, the opt-in training page
// in headless Chromium, and the native `websr fl-client` complete two rounds together. The
// global version must advance to 2, each round must have merged both participants' updates,
// and the page must show what it sent. Once more with --secure-aggregation: both clients send
// only masked updates through /v1/secagg/... and the rounds still close with both updates.
//
// Runs per mode: `cpu` (the page trains in wasm on burn flex) and `webgpu` (SwiftShader).
// Env: WEBSR_DIST (default dist), WEBSR_BIN (native websr CLI), WEBSR_AGGREGATOR (the server
// binary), CHROMIUM (default /usr/bin/chromium), WEBSR_FL_MODES (default "cpu,webgpu").
// Prints cargo's "test result:" line so scripts/test.sh sums it with the other tests.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { syntheticPng } from './png.mjs';
import { serve } from '../../scripts/static-server.mjs';
import { CHROMIUM_ARGS, Suite, assert } from './harness.mjs';

const DIST = path.resolve(process.env.WEBSR_DIST || 'dist');
const BIN = process.env.WEBSR_BIN;
const AGGREGATOR = process.env.WEBSR_AGGREGATOR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODES = (process.env.WEBSR_FL_MODES || 'cpu,webgpu').split(',');
const LONG = 600_000;
const CLIP = 5;

for (const [name, file] of [['WEBSR_BIN', BIN], ['WEBSR_AGGREGATOR', AGGREGATOR]]) {
  if (!file || !fs.existsSync(file)) throw new Error(`${name} must point at a built binary (got ${file})`);
}
if (!fs.existsSync(path.join(DIST, 'federated.html'))) throw new Error(`${DIST}/federated.html missing: build the app first`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'websr-fl-'));

/** Starts a process and collects its output; `exited` resolves to the exit code. */
function start(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  return { child, exited, output: () => output };
}

/** The aggregator on a free loopback port; resolves once it prints its address. */
async function startAggregator(dir, origin, extra = []) {
  const p = start(AGGREGATOR, [
    '--bind', '127.0.0.1:0', '--init', 'models/wavelr-x4.safetensors', '--state-dir', dir,
    '--min-clients', '2', '--target-clients', '2', '--over-selection', '1', '--rounds', '2',
    '--round-deadline-secs', '900', '--batch-size', '8', '--local-epochs', '1',
    '--client-lr', '1e-4', '--clip-norm', String(CLIP), '--allow-origin', origin, ...extra,
  ]);
  const t0 = Date.now();
  while (!/listening on (http:\/\/\S+)/.test(p.output())) {
    if (p.child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`aggregator did not start:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ...p, url: p.output().match(/listening on (http:\/\/\S+)/)[1] };
}

const suite = new Suite();
const test = (name, fn) => suite.test(name, fn);

const web = await serve(DIST);
const origin = `http://127.0.0.1:${web.address().port}`;
try {
  // Every mode in plain rounds; secure aggregation once, on the CPU (the protocol runs in wasm
  // either way, and the WebGPU run takes 40 s more).
  const runs = MODES.map((mode) => ({ mode, secure: false }));
  if (MODES.includes('cpu')) runs.push({ mode: 'cpu', secure: true });
  for (const { mode, secure } of runs) {
    const how = secure ? ' with secure aggregation (only the sum reaches the server)' : '';
    await test(`[${mode}] a browser and a native client complete two rounds${how}; the global version advances`, async () => {
      const dir = fs.mkdtempSync(path.join(tmp, `${mode}-${secure}-`));
      const agg = await startAggregator(path.join(dir, 'state'), origin, secure ? ['--secure-aggregation'] : []);
      let native = null;
      const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
        executablePath: CHROMIUM,
        headless: true,
        args: [...CHROMIUM_ARGS, ...(mode === 'webgpu' ? ['--enable-unsafe-webgpu'] : [])],
      });
      try {
        const photos = path.join(dir, 'photos');
        fs.mkdirSync(photos);
        for (const seed of [1, 2]) fs.writeFileSync(path.join(photos, `p${seed}.png`), syntheticPng(128, 96, { seed }));
        native = start(BIN, ['fl-client', '--server', agg.url, '--data', photos, '--rounds', '2',
          '--max-steps', '3', '--patch', '64', '--seed', '5', '--timeout-secs', '600']);

        const page = await context.newPage();
        page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
        // 425 Too Early is the secure-aggregation phases' "not closed yet": polled, not a failure.
        page.on('console', (m) => { if (m.type() === 'error' && !/425 \(Too Early\)/.test(m.text())) console.log(`  [console] ${m.text()}`); });
        await page.goto(`${origin}/federated.html?server=${encodeURIComponent(agg.url)}&backend=${mode}`);
        await page.setInputFiles('[data-testid=fl-files]', [3, 4].map((seed) => (
          { name: `mine${seed}.png`, mimeType: 'image/png', buffer: syntheticPng(128, 128, { seed }) })));
        await page.fill('[data-testid=fl-rounds-wanted]', '2');
        await page.fill('[data-testid=fl-max-steps]', '3');
        await page.click('[data-testid=fl-start]');
        await page.waitForFunction(() => document.querySelector('[data-testid=fl-rounds]').dataset.done === '2'
          || !document.querySelector('[data-testid=fl-message]').hidden, null, { timeout: LONG, polling: 200 });
        const message = await page.locator('[data-testid=fl-message]');
        assert(await message.isHidden(), `the page failed: ${await message.textContent()}`);
        const backend = await page.getAttribute('[data-testid=fl-backend]', 'data-backend');
        assert(backend === mode, `trained on ${backend}, expected ${mode}`);

        // What the page says it sent: two rows, a real body, clipped to the server's bound.
        const rows = await page.$$eval('[data-testid=fl-sent] tbody tr',
          (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
        assert(rows.length === 2, `${rows.length} rows in "what is sent"`);
        for (const r of rows) {
          assert(Number(r[2].replace(/\D/g, '')) > 100_000, `update of ${r[2]} bytes`);
          assert(Number(r[7]) > 0 && Number(r[7]) <= CLIP * 1.0001, `sent norm ${r[7]}`);
          assert(Number(r[8]) === CLIP, `clip bound shown ${r[8]}, the server's is ${CLIP}`);
        }
        // The page states its own floor and the server's privacy claim (no noise here: none).
        assert(/at least 20 steps .* at least 8, .* at most 10\./.test(await page.textContent('[data-testid=fl-floor]')),
          `floor: ${await page.textContent('[data-testid=fl-floor]')}`);
        assert(await page.getAttribute('[data-testid=fl-privacy]', 'data-epsilon') === 'none', 'no noise: no epsilon');
        assert(rows[0][1] === '0' && rows[1][1] === '1', `trained from versions ${rows[0][1]}, ${rows[1][1]}`);
        for (const r of rows) {
          const masked = /sent masked \(secure aggregation, session \d+\): the server summed 2 updates -> v[12]/.test(r[9]);
          assert(masked === secure, `server column "${r[9]}" (secure aggregation ${secure})`);
        }

        const code = await Promise.race([native.exited, new Promise((r) => setTimeout(() => r('timeout'), LONG))]);
        assert(code === 0, `websr fl-client exited with ${code}:\n${native.output()}`);
        const status = await (await fetch(`${agg.url}/v1/status`)).json();
        assert(status.global_version === 2 && status.finished, `status ${JSON.stringify(status)}`);
        const metrics = await (await fetch(`${agg.url}/v1/metrics`)).json();
        assert(metrics.history.length === 2, `${metrics.history.length} rounds recorded`);
        for (const r of metrics.history) {
          assert(r.clients.length === 2, `round ${r.round} merged ${r.clients.length} updates`);
          if (secure) assert(/secure aggregation/.test(native.output()), `the native client did not take part securely:\n${native.output()}`);
          assert(r.delta_norm > 0, `round ${r.round} did not move the model`);
        }
        console.log(`     rounds: ${metrics.history.map((r) => `v${r.round} clients ${r.clients} loss ${r.mean_client_loss?.toFixed(4)}`).join('; ')}`);
      } finally {
        await context.close();
        native?.child.kill('SIGKILL');
        agg.child.kill('SIGKILL');
      }
    });
  }
} finally {
  web.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}

suite.finish('federated end-to-end');
