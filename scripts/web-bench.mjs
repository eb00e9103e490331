// Browser benchmark: per backend (WebGPU, CPU fallback) and model, the cold start (worker + wasm
// + model + first 256x256 result, shader compilation included), the warm time per 256x256 input
// tile, ms per output megapixel, and the wasm size. Prints a markdown table.
//   node scripts/web-bench.mjs [--models wavelr-x4,wavelr-x2] [--modes webgpu,cpu,cpu-scalar] [--runs 3]
// cpu-scalar: the CPU path with the SIMD GEMM kernel switched off (the build before SIMD).
// Needs dist/ (scripts/web-build.sh) and Debian's Chromium.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { serve } from './static-server.mjs';
import { CHROMIUM_ARGS } from '../tests/browser/harness.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const models = arg('models', 'wavelr-x4,wavelr-x2').split(',');
const modes = arg('modes', 'webgpu,cpu').split(',');
const runs = Number(arg('runs', '3'));
const dist = path.resolve(arg('dist', 'dist'));
const side = 256;

const wasm = fs.readFileSync(path.join(dist, 'websr_bg.wasm'));
const gz = zlib.gzipSync(wasm, { level: 9 }).length;
const server = await serve(dist);
const base = `http://127.0.0.1:${server.address().port}`;
const rows = [];

for (const mode of modes) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'websr-bench-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...(mode === 'webgpu' ? ['--enable-unsafe-webgpu'] : [])],
  });
  const page = await context.newPage();
  await page.goto(`${base}/websr.mjs`); // any same-origin page works to import the module
  for (const model of models) {
    const r = await page.evaluate(async ({ model, side, runs, mode }) => {
      const scalar = mode === 'cpu-scalar';
      const { WebSR } = await import('/websr.mjs');
      const data = new ImageData(side, side);
      for (let i = 0; i < data.data.length; i++) data.data[i] = i % 4 === 3 ? 255 : (i * 2654435761) >>> 24;
      const t0 = performance.now();
      const sr = await WebSR.create({ model, backend: scalar ? 'cpu' : mode, cpuSimd: !scalar });
      const tLoaded = performance.now();
      await sr.upscale(data, { tileSize: side });
      const cold = performance.now() - t0;
      const warm = [];
      for (let k = 0; k < runs; k++) {
        const t = performance.now();
        await sr.upscale(data, { tileSize: side });
        warm.push(performance.now() - t);
      }
      warm.sort((a, b) => a - b);
      const info = sr.info;
      sr.dispose();
      return { load: tLoaded - t0, cold, warm: warm[Math.floor(warm.length / 2)], backend: scalar ? 'cpu, SIMD off' : info.backend, adapter: info.adapter, scale: info.scale };
    }, { model, side, runs, mode });
    const outMp = (side * r.scale) ** 2 / 1e6;
    rows.push({ mode: `${r.backend} (${r.adapter})`, model, ...r, perMp: r.warm / outMp });
    console.error(`${mode} ${model}: cold ${r.cold.toFixed(0)} ms, warm ${r.warm.toFixed(0)} ms`);
  }
  await context.close();
}
server.close();

console.log(`| backend | model | cold start (ms) | warm ms per ${side}x${side} input | ms per output MP |`);
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.mode} | ${r.model} | ${r.cold.toFixed(0)} | ${r.warm.toFixed(0)} | ${r.perMp.toFixed(0)} |`);
}
console.log(`\nwasm: ${(wasm.length / 1048576).toFixed(2)} MiB raw, ${(gz / 1048576).toFixed(2)} MiB gzip (websr_bg.wasm)`);
