// Browser benchmark: per backend (WebGPU, CPU fallback) and model, the cold start (worker + wasm
// + model + first 256x256 result, shader compilation included), the warm time per 256x256 input,
// GMAC/s, ms per output megapixel, and the wasm size; with --native, the native CLI's rows for the
// same models (`websr bench`) in the same run. Prints a markdown table. A diffusion model among
// --models is timed on a --diffusion-size input (64: one 256x256 output tile) with --steps DDIM
// steps from its default strength: ms per step, in a table of its own. With --diffusion-tile N
// (LR pixels; default: whole up to 256x256, tiles of 128 above) it is sampled in tiles, which
// the CPU pool shares among its workers (compare modes cpu and cpu-1).
//   node scripts/web-bench.mjs [--models wavelr-deep-x4] [--modes webgpu,cpu,cpu-1,cpu-plain,cpu-1-plain,cpu-burn,cpu-scalar]
//                              [--runs 3] [--native target/release/websr] [--steps 4]
//                              [--diffusion-size 64] [--diffusion-tile N]
// Modes: webgpu (one worker); cpu (the pool: one worker per core); cpu-1 (one worker);
// cpu-plain, cpu-1-plain (the same on the plain-SIMD wasm build, no relaxed SIMD);
// cpu-burn (one worker, burn's im2col + GEMM convolution instead of websr's direct kernel);
// cpu-scalar (one worker, SIMD off: the build before SIMD).
// With --native, the same run times the native CLI: `websr bench` for the one-pass models and
// `websr upscale` of the same 64x64 input (1 and 2 threads) for the diffusion models.
// Needs dist/ (scripts/web-build.sh) and Debian's Chromium.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
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
const models = arg('models', 'wavelr-deep-x4').split(',');
const modes = arg('modes', 'webgpu,cpu,cpu-1,cpu-burn,cpu-scalar').split(',');
const native = arg('native', '');
/** WebSR.create options of each mode. */
const MODES = {
  webgpu: { backend: 'webgpu' },
  cpu: { backend: 'cpu' },
  'cpu-1': { backend: 'cpu', workers: 1 },
  'cpu-plain': { backend: 'cpu', relaxedSimd: false },
  'cpu-1-plain': { backend: 'cpu', workers: 1, relaxedSimd: false },
  'cpu-burn': { backend: 'cpu', workers: 1, directConv: false },
  'cpu-scalar': { backend: 'cpu', workers: 1, cpuSimd: false },
};
const runs = Number(arg('runs', '3'));
const dist = path.resolve(arg('dist', 'dist'));
const side = 256;
const diffusionSteps = Number(arg('steps', '4'));
const diffusionSide = Number(arg('diffusion-size', '64'));
const diffusionTile = arg('diffusion-tile', 'auto');
const diffusionRows = [];

const wasm = fs.readFileSync(path.join(dist, 'websr_bg.wasm'));
const gz = zlib.gzipSync(wasm, { level: 9 }).length;
const server = await serve(dist);
const base = `http://127.0.0.1:${server.address().port}`;
const rows = [];

for (const mode of modes) {
  if (!MODES[mode]) throw new Error(`unknown mode ${mode} (known: ${Object.keys(MODES).join(', ')})`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'websr-bench-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...(mode === 'webgpu' ? ['--enable-unsafe-webgpu'] : [])],
  });
  const page = await context.newPage();
  await page.goto(`${base}/websr.mjs`); // any same-origin page works to import the module
  for (const model of models) {
    const r = await page.evaluate(async ({ model, side, runs, options, steps, diffusionSide, diffusionTile }) => {
      const { WebSR } = await import('/websr.mjs');
      const t0 = performance.now();
      const sr = await WebSR.create({ model, ...options });
      const tLoaded = performance.now();
      // A diffusion model: a diffusionSide input (64: one 256x256 output tile), `steps` DDIM steps.
      const diffusion = sr.info.kind === 'diffusion';
      const inSide = diffusion ? diffusionSide : side;
      const data = new ImageData(inSide, inSide);
      for (let i = 0; i < data.data.length; i++) data.data[i] = i % 4 === 3 ? 255 : (i * 2654435761) >>> 24;
      const run = () => sr.upscale(data, diffusion ? { steps, diffusionTile } : { tileSize: side });
      await run();
      const cold = performance.now() - t0;
      const warm = [];
      for (let k = 0; k < runs; k++) {
        const t = performance.now();
        await run();
        warm.push(performance.now() - t);
      }
      warm.sort((a, b) => a - b);
      const info = sr.info;
      const workers = sr.workerCount;
      sr.dispose();
      return { load: tLoaded - t0, cold, warm: warm[Math.floor(warm.length / 2)], info, workers, cores: navigator.hardwareConcurrency };
    }, { model, side, runs, options: MODES[mode], steps: diffusionSteps, diffusionSide, diffusionTile });
    const kernel = r.info.backend === 'cpu' ? `, kernel ${r.info.cpuKernel}` : '';
    const what = `${mode}: ${r.info.backend} (${r.info.adapter}${kernel}), ${r.workers} worker${r.workers > 1 ? 's' : ''}`;
    if (r.info.kind === 'diffusion') {
      diffusionRows.push({ what, model, cold: r.cold, warm: r.warm, strength: r.info.defaultStrength });
      console.error(`${what} ${model}: cold ${r.cold.toFixed(0)} ms, warm ${r.warm.toFixed(0)} ms for ${diffusionSteps} steps`);
      continue;
    }
    const outPx = (side * r.info.scale) ** 2;
    const gmacs = (r.info.macsPerOutputPixel * outPx) / r.warm / 1e6;
    rows.push({ what, model, cold: r.cold, warm: r.warm, gmacs, perMp: r.warm / (outPx / 1e6) });
    console.error(`${what} ${model}: cold ${r.cold.toFixed(0)} ms, warm ${r.warm.toFixed(0)} ms (${r.cores} cores)`);
  }
  await context.close();
}
server.close();

// The native CLI on the same machine, in the same run: burn flex (as built) and the direct kernel.
if (native) {
  const table = execFileSync(native, ['bench', '--size', String(side), '--no-train', '--reps', String(runs)], { encoding: 'utf8' });
  for (const model of models) {
    const [arch, scale] = [model.replace(/-x\d$/, ''), Number(model.slice(-1))];
    const label = arch === 'wavelr-deep' ? `wavelr (${scale === 4 ? 16 : 12} body layers)` : arch;
    for (const line of table.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      if (!cells[1]?.startsWith(`${label} x${scale} forward`)) continue;
      const ms = Number(cells[2]);
      const macs = Number(cells[4]);
      const gmacs = (macs * (side * scale) ** 2) / ms / 1e6;
      rows.push({ what: `native: ${cells[1].includes('direct') ? 'direct conv' : 'burn flex'}`, model, cold: NaN, warm: ms, gmacs, perMp: ms / ((side * scale) ** 2 / 1e6) });
    }
  }
}

// Diffusion natively: `websr upscale` of the browser's 64x64 input on 1 and 2 threads, the
// whole process (loading included), median of `runs` after one warm-up.
if (native) {
  const diffusionModels = [...new Set(diffusionRows.map((r) => r.model))];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'websr-bench-native-'));
  const input = path.join(dir, 'in.png');
  fs.writeFileSync(input, benchPng(diffusionSide));
  const tileArgs = diffusionTile === 'auto' ? [] : ['--diffusion-tile', diffusionTile];
  for (const model of diffusionModels) {
    for (const threads of [1, 2]) {
      const times = [];
      for (let k = 0; k <= runs; k++) {
        const t = performance.now();
        execFileSync(native, ['upscale', input, '-o', path.join(dir, 'out.png'), '--model', model, '--steps', String(diffusionSteps), ...tileArgs], {
          env: { ...process.env, RAYON_NUM_THREADS: String(threads) },
          stdio: 'ignore',
        });
        if (k > 0) times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      const strength = diffusionRows.find((r) => r.model === model).strength;
      diffusionRows.push({ what: `native CLI (\`websr upscale\`, whole process), ${threads} thread${threads > 1 ? 's' : ''}`, model, cold: NaN, warm: times[Math.floor(times.length / 2)], strength });
    }
  }
}

console.log(`| backend | model | cold start (ms) | warm ms per ${side}x${side} input | GMAC/s | ms per output MP |`);
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const cold = Number.isNaN(r.cold) ? '-' : r.cold.toFixed(0);
  console.log(`| ${r.what} | ${r.model} | ${cold} | ${r.warm.toFixed(0)} | ${r.gmacs.toFixed(1)} | ${r.perMp.toFixed(0)} |`);
}
if (diffusionRows.length) {
  const tiles = diffusionTile === 'auto' ? '' : `, tiles of ${diffusionTile}`;
  console.log(`\n| backend | diffusion model | cold start (ms) | warm ms per ${diffusionSteps}-step ${diffusionSide}x${diffusionSide} input${tiles} | ms per step (${diffusionSide * 4}x${diffusionSide * 4} output) |`);
  console.log('|---|---|---|---|---|');
  for (const r of diffusionRows) {
    const cold = Number.isNaN(r.cold) ? '-' : r.cold.toFixed(0);
    console.log(`| ${r.what} | ${r.model} (strength ${r.strength}) | ${cold} | ${r.warm.toFixed(0)} | ${(r.warm / diffusionSteps).toFixed(0)} |`);
  }
}
console.log(`\nwasm: ${(wasm.length / 1048576).toFixed(2)} MiB raw, ${(gz / 1048576).toFixed(2)} MiB gzip (websr_bg.wasm); ${os.cpus().length} cores, ${os.cpus()[0]?.model}`);

/** The browser run's input pattern as an RGB PNG of `side` x `side` (for the native rows). */
function benchPng(side) {
  const raw = Buffer.alloc(side * (1 + 3 * side));
  for (let y = 0; y < side; y++) {
    raw[y * (1 + 3 * side)] = 0; // filter: none
    for (let x = 0; x < side; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * side + x) * 4 + c; // the ImageData index the page fills
        raw[y * (1 + 3 * side) + 1 + 3 * x + c] = Number((BigInt(i) * 2654435761n) & 0xffffffffn) >>> 24;
      }
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
