// The websr Web Worker: owns the wasm runtime, the compute device and the loaded model.
// Protocol (all messages carry an `id`):
//   page -> worker  {type:'load', weights:ArrayBuffer, backend, cpuSimd?, directConv?} -> {type:'result', value:info}
//                     (info.kind: 'regression' (one pass) or 'diffusion', read from the weights)
//                   {type:'upscale', input, tile, tta, steps, strength, seed, yoda, previewEvery}
//                     (tile/tta for a one-pass model, the rest for a diffusion model)
//                                                                     -> {type:'progress', done, total, preview?:{width,height,rgba}}*
//                                                                     -> {type:'result', value:{width,height,rgba,png,tiles|steps}}
//                   {type:'cancel', id}  (stops that upscale between tiles, that training between steps)
//   a one-pass upscale shared by a pool of workers (websr.mjs): the first worker coordinates,
//                   {type:'tiles-start', input, tile, tta, minTiles}  -> {type:'result', value:{job, inputs:[{data,height,width}]}}
//                   {type:'tiles-add', job, index, data, height, width} (in tile order)  -> {type:'result'}
//                   {type:'tiles-finish', job}  -> {type:'result', value:{width,height,rgba,png,tiles}}
//                   {type:'tiles-drop', job}    (a cancelled or failed pooled upscale)
//                 and any worker with the same model computes tiles:
//                   {type:'tile-run', data:ArrayBuffer (planar RGB f32), height, width, tta}
//                                                                     -> {type:'result', value:{data,height,width}}
//   a diffusion upscale shared the same way (tiles-add with the tile's evaluations, tiles-finish, tiles-drop):
//                   {type:'dtiles-start', input, steps, strength, seed, yoda, diffusionTile}
//                                       -> {type:'result', value:{job, steps, tasks:[{data,height,width,whole,origin,importance?}]}}
//                                          or, for an image sampled whole (progress and previews as for upscale),
//                                          {type:'result', value:{whole: <upscale's value>}}
//                   {type:'dtile-run', task, steps, strength, seed, yoda, diffusionTile}
//                                                                     -> {type:'progress', done, total}* (steps of the tile)
//                                                                     -> {type:'result', value:{data,height,width,evaluations}}
//   federated training (the participant's photos stay in this worker):
//                   {type:'fl-create', backend, degradation}         -> {type:'result', value:{backend,adapter,note,floor}}
//                   {type:'fl-add', input, patch}                    -> {type:'result', value:{images, examples}}
//                   {type:'fl-train', model:ArrayBuffer, round:string, patch, maxSteps, seed}
//                                                                     -> {type:'progress', done, total, loss}*
//                                                                     -> {type:'result', value:{body:ArrayBuffer, secureAggregation, ...}}
//                 a secure-aggregation round (the trained delta stays here; only masked it leaves):
//                   {type:'secagg-join', round:string, clientId}      -> {type:'result', value:{session, keys:string}}
//                   {type:'secagg-shares', directory:string}          -> {type:'result', value: shares JSON}
//                   {type:'secagg-masked', routed:string}             -> {type:'result', value: ArrayBuffer}
//                   {type:'secagg-unmask', request:string}            -> {type:'result', value: response JSON}
//                   {type:'secagg-drop'}                              (the session ended or failed)
//                   {type:'jpeg-quality', bytes:ArrayBuffer}          -> {type:'result', value: 1-100 | null}
//   errors          {type:'error', error:{name,message}, fatal}  (fatal: the wasm instance trapped)
// Two builds of the same runtime: websr-relaxed.js (the convolution kernel with relaxed SIMD's
// fused multiply-add) where this browser validates relaxed SIMD, else websr.js (plain wasm
// SIMD). The page can ask for the plain one with `?kernel=simd128` on this worker's URL.
let wasm = null; // the loaded build's exports, once `ready` resolves
const ready = (async () => {
  const plain = new URL(import.meta.url).searchParams.get('kernel') === 'simd128';
  if (!plain && relaxedSimdSupported()) {
    try {
      wasm = await import('./websr-relaxed.js');
    } catch {
      wasm = null; // not deployed (an embedder may ship only websr.js): the plain build
    }
  }
  wasm ??= await import('./websr.js');
  await wasm.default();
})();

/** Whether this engine validates relaxed SIMD: a module computing
 *  `i8x16.relaxed_swizzle(i8x16.splat(1), i8x16.splat(2))` (wasm-feature-detect's probe). */
function relaxedSimdSupported() {
  const probe = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, // magic, version
    1, 5, 1, 96, 0, 1, 123, // type section: () -> v128
    3, 2, 1, 0, // function section: one function of type 0
    10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11, // its code
  ]);
  try {
    return WebAssembly.validate(probe);
  } catch {
    return false;
  }
}
let engine = null;
let flClient = null;
let securedUpdate = null; // a trained update waiting for its secure-aggregation session
let participant = null; // this worker's part in the open secure-aggregation session
const cancelled = new Set();
let queue = Promise.resolve(); // one job at a time: the device is shared
const tileJobs = new Map(); // pooled upscales this worker coordinates, by the id of their tiles-start

let adapterName = ''; // the WebGPU adapter's name, for the page ('' without one)

// Renderers that run WebGPU on the CPU (Chromium's SwiftShader, Mesa's llvmpipe and lavapipe,
// Windows' WARP "Microsoft Basic Render Driver"), matched in the adapter's info strings.
const SOFTWARE_RENDERERS = /swiftshader|llvmpipe|lavapipe|microsoft basic render/i;

/** Whether a WebGPU adapter is a software renderer: the browser says so (isFallbackAdapter), or
 *  its vendor, architecture, device or description names one. Our models run about 10x slower
 *  on such an adapter than on the wasm CPU path, so 'auto' does not take it. */
function isSoftwareAdapter(info) {
  if (!info) return false;
  if (info.isFallbackAdapter) return true;
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  return SOFTWARE_RENDERERS.test(text);
}

// The browser's WebGPU adapter: { problem } (why WebGPU cannot be used) without one, else
// { name, software }. Checked here so the CPU fallback can say why.
async function probeWebgpu() {
  if (!('gpu' in navigator)) return { problem: 'this browser has no WebGPU (navigator.gpu is missing)' };
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { problem: `WebGPU adapter request failed: ${e.message}` };
  }
  if (!adapter) return { problem: 'no WebGPU adapter is available on this device' };
  // GPUAdapterInfo's fields are getters, so copy them; older Chromium has isFallbackAdapter on
  // the adapter itself.
  const raw = adapter.info || {};
  const info = {
    vendor: raw.vendor, architecture: raw.architecture, device: raw.device, description: raw.description,
    isFallbackAdapter: Boolean(raw.isFallbackAdapter ?? adapter.isFallbackAdapter),
  };
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'GPU';
  return { name, software: isSoftwareAdapter(info) };
}

// The backend to ask the wasm runtime for, and why it is not the requested one. 'auto' takes
// WebGPU only on a hardware adapter; an explicit 'webgpu' takes any adapter, software too.
async function chooseBackend(backend) {
  await ready;
  adapterName = '';
  if (backend !== 'auto' && backend !== 'webgpu') return { use: backend, note: '' };
  const { problem, name, software } = await probeWebgpu();
  if (problem && backend === 'webgpu') throw Object.assign(new Error(problem), { name: 'UnsupportedError' });
  if (problem) return { use: 'cpu', note: `${problem}; running on the CPU, which is slower` };
  adapterName = `${name}${software ? ' (software)' : ''}`;
  if (backend === 'auto' && software) {
    const note = `WebGPU adapter "${name}" is a software renderer, slower than the CPU path here; running on the CPU`;
    return { use: 'cpu', note };
  }
  return { use: backend, note: '' };
}

// What the page is told about the device a runtime object (Engine, FlClient) ended up on:
// the browser's adapter name when it has one, and why it is not the requested backend.
function deviceInfo(runtime, use, backend, note) {
  return {
    backend: runtime.backend,
    adapter: runtime.backend === 'webgpu' && adapterName ? adapterName : runtime.adapter,
    note: note || (use === 'cpu' && backend === 'cpu' ? '' : runtime.note),
  };
}

async function load({ weights, backend, cpuSimd = true, directConv = true }) {
  const { use, note } = await chooseBackend(backend);
  wasm.setCpuSimd(cpuSimd !== false);
  wasm.setDirectConv(directConv !== false);
  for (const job of tileJobs.values()) job.free();
  tileJobs.clear();
  engine?.free();
  engine = null;
  const e = await wasm.Engine.create(new Uint8Array(weights), use);
  engine = e;
  return {
    ...deviceInfo(e, use, backend, note),
    kind: e.kind,
    scale: e.scale,
    arch: e.arch,
    yodaTrained: e.yodaTrained,
    defaultSteps: e.defaultSteps,
    defaultStrength: e.defaultStrength,
    autoTile: e.autoTile,
    maxBufferBytes: e.maxBufferBytes,
    macsPerOutputPixel: e.macsPerOutputPixel,
    // The CPU convolution kernel's arithmetic: 'relaxed-simd', 'simd128' or 'portable'.
    cpuKernel: wasm.cpuKernel(),
  };
}

// Formats the Rust decoder lacks (GIF, AVIF, ...) are decoded by the browser.
async function browserDecode(source) {
  let bitmap;
  try {
    bitmap = source instanceof ImageBitmap
      ? source
      : await createImageBitmap(source, { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch {
    throw Object.assign(new Error('This file is not an image websr can read (PNG, JPEG, WebP, BMP, GIF or AVIF expected)'), { name: 'DecodeError' });
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close();
  return wasm.Image.fromRgba(new Uint8Array(data.data.buffer), data.width, data.height);
}

async function toImage(input) {
  if (input.kind === 'rgba') return wasm.Image.fromRgba(new Uint8Array(input.rgba), input.width, input.height);
  if (input.kind === 'bitmap') return browserDecode(input.bitmap);
  const bytes = new Uint8Array(input.bytes);
  try {
    return wasm.Image.decode(bytes); // same decoder as the native CLI: identical pixels
  } catch (e) {
    if (e.name !== 'DecodeError') throw e;
    return browserDecode(new Blob([bytes], { type: input.type || '' }));
  }
}

// After each tile or step: report, let a cancel message in, say whether to go on.
async function reported(id, message, transfer = []) {
  postMessage({ type: 'progress', id, ...message }, transfer);
  await new Promise((r) => setTimeout(r, 0));
  return !cancelled.has(id);
}

// The engine's options of an upscale request; steps/strength left undefined take the model's own
// defaults (the engine's).
function upscaleOptions({ tile = 0, tta = false, steps, strength, seed = 0, yoda = false, previewEvery = 0, diffusionTile = 0 }) {
  return { tile, tta, steps, strength, seed: seed >>> 0, yoda, previewEvery, diffusionTile };
}

async function upscale(msg, image) {
  needEngine();
  image ??= await toImage(msg.input);
  const { id } = msg;
  let count = 0;
  const options = upscaleOptions(msg);
  const out = await engine.upscale(image, options, (done, total, preview) => {
    count = total;
    if (!preview) return reported(id, { done, total });
    const p = { width: preview.width, height: preview.height, rgba: preview.rgba.buffer };
    return reported(id, { done, total, preview: p }, [p.rgba]);
  });
  return upscaledMessage(out, { [engine.kind === 'diffusion' ? 'steps' : 'tiles']: count });
}

// The page's copy of an `Upscaled` (freed here) plus `extra`, and its transfer list; the device
// memory of the finished upscale is released.
function upscaledMessage(out, extra) {
  const rgba = out.rgba.buffer;
  const png = out.png.buffer;
  const value = { width: out.width, height: out.height, rgba, png, ...extra };
  out.free();
  engine.releaseMemory();
  return [value, [rgba, png]];
}

function needEngine() {
  if (!engine) throw Object.assign(new Error('no model loaded'), { name: 'ModelError' });
  return engine;
}

async function tilesStart({ id, input, tile, tta = false, minTiles = 1 }) {
  const job = needEngine().startTiles(await toImage(input), { tile, tta, minTiles });
  tileJobs.set(id, job);
  const inputs = [];
  for (let i = 0; i < job.count; i++) {
    const { data, height, width } = job.input(i);
    inputs.push({ data: data.buffer, height, width });
  }
  return [{ job: id, inputs }, inputs.map((t) => t.data)];
}

function tileJob(id) {
  const job = tileJobs.get(id);
  if (!job) throw Object.assign(new Error(`no pooled upscale ${id} in this worker`), { name: 'WebSrError' });
  return job;
}

async function tileRun({ data, height, width, tta = false }) {
  const e = needEngine();
  const out = await e.runTile(new Float32Array(data), height, width, tta);
  return [{ data: out.buffer, height: height * e.scale, width: width * e.scale }, [out.buffer]];
}

// A diffusion upscale the pool can share: an image sampled in tiles is planned here and its
// tasks handed back; one sampled whole (one tile, with previews) is upscaled here at once.
async function diffusionTilesStart(msg) {
  const e = needEngine();
  const image = await toImage(msg.input);
  const options = upscaleOptions(msg);
  if (e.diffusionTileCount(image.width, image.height, options) < 2) {
    const [whole, transfer] = await upscale(msg, image);
    return [{ whole }, transfer];
  }
  const job = await e.startDiffusionTiles(image, options);
  tileJobs.set(msg.id, job);
  const tasks = [];
  const transfer = [];
  for (let i = 0; i < job.count; i++) {
    const task = job.task(i);
    transfer.push(task.data.buffer);
    if (task.importance) transfer.push(task.importance.data.buffer);
    tasks.push(task);
  }
  return [{ job: msg.id, tasks, steps: job.steps }, transfer];
}

async function diffusionTileRun(msg) {
  const out = await needEngine().sampleTile(msg.task, upscaleOptions(msg), (done, total) => reported(msg.id, { done, total }));
  const data = out.data.buffer;
  return [{ data, height: out.height, width: out.width, evaluations: out.evaluations }, [data]];
}

async function tilesFinish({ job: id }) {
  const job = tileJob(id);
  const tiles = job.count;
  tileJobs.delete(id);
  const out = await job.finish(); // a diffusion job's finish is a Promise
  job.free();
  return upscaledMessage(out, { tiles });
}

async function flCreate({ backend, degradation }) {
  const { use, note } = await chooseBackend(backend);
  flClient?.free();
  flClient = null;
  const c = await wasm.FlClient.create(use, degradation);
  flClient = c;
  return { ...deviceInfo(c, use, backend, note), floor: JSON.parse(wasm.clientFloor()) };
}

function needClient() {
  if (!flClient) throw Object.assign(new Error('no training session: send fl-create first'), { name: 'WebSrError' });
  return flClient;
}

async function flAdd({ input, patch }) {
  const c = needClient();
  c.addImage(await toImage(input));
  return { images: c.imageCount, examples: c.examples(patch) };
}

async function flTrain({ id, model, round, patch, maxSteps, seed }) {
  const c = needClient();
  const afterStep = (done, total, loss) => reported(id, { done, total, loss });
  const u = await c.train(new Uint8Array(model), round, patch, maxSteps, seed >>> 0, afterStep);
  const body = u.body.buffer;
  const value = {
    body, baseVersion: u.baseVersion, numExamples: u.numExamples, steps: u.steps,
    meanLoss: u.meanLoss, norm: u.norm, sentNorm: u.sentNorm, clipBound: u.clipBound,
    secureAggregation: u.secureAggregation,
  };
  securedUpdate?.free();
  securedUpdate = null;
  if (u.secureAggregation) securedUpdate = u;
  else u.free();
  return [value, [body]];
}

function secaggDrop() {
  participant?.free();
  participant = null;
}

/** One step of this worker's part in a secure-aggregation session (see the header). */
function secaggStep(msg) {
  if (msg.type === 'secagg-join') {
    if (!securedUpdate) throw Object.assign(new Error('no trained update waits for secure aggregation'), { name: 'WebSrError' });
    secaggDrop();
    const u = securedUpdate;
    securedUpdate = null;
    try {
      participant = u.joinSecureAggregation(msg.round, msg.clientId);
    } finally {
      u.free();
    }
    return [{ session: participant.session, keys: participant.keysMessage() }, []];
  }
  if (msg.type === 'secagg-drop') {
    secaggDrop();
    return [null, []];
  }
  if (!participant) throw Object.assign(new Error('no secure-aggregation session: send secagg-join first'), { name: 'WebSrError' });
  if (msg.type === 'secagg-shares') return [participant.shareKeys(msg.directory), []];
  if (msg.type === 'secagg-masked') {
    const body = participant.maskedInput(msg.routed).buffer;
    return [body, [body]];
  }
  if (msg.type === 'secagg-unmask') {
    const response = participant.unmask(msg.request);
    secaggDrop(); // the last message: the session's secrets go with it
    return [response, []];
  }
  throw new Error(`unknown message type ${msg.type}`);
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === 'cancel') {
    cancelled.add(msg.id);
    return;
  }
  queue = queue.then(async () => {
    try {
      if (cancelled.has(msg.id)) throw Object.assign(new Error('cancelled'), { name: 'CancelledError' });
      if (msg.type === 'load') {
        postMessage({ type: 'result', id: msg.id, value: await load(msg) });
      } else if (msg.type === 'upscale') {
        const [value, transfer] = await upscale(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'tile-run') {
        const [value, transfer] = await tileRun(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'tiles-start') {
        const [value, transfer] = await tilesStart(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'dtiles-start') {
        const [value, transfer] = await diffusionTilesStart(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'dtile-run') {
        const [value, transfer] = await diffusionTileRun(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'tiles-add') {
        // A diffusion job also counts the tile's network evaluations (one-pass jobs ignore it).
        tileJob(msg.job).add(msg.index, msg.height, msg.width, new Float32Array(msg.data), msg.evaluations ?? 0);
        postMessage({ type: 'result', id: msg.id, value: null });
      } else if (msg.type === 'tiles-finish') {
        const [value, transfer] = await tilesFinish(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type === 'tiles-drop') {
        tileJobs.get(msg.job)?.free();
        tileJobs.delete(msg.job);
        engine?.releaseMemory();
        postMessage({ type: 'result', id: msg.id, value: null });
      } else if (msg.type === 'jpeg-quality') {
        await ready;
        postMessage({ type: 'result', id: msg.id, value: wasm.jpegQuality(new Uint8Array(msg.bytes)) ?? null });
      } else if (msg.type === 'fl-create') {
        postMessage({ type: 'result', id: msg.id, value: await flCreate(msg) });
      } else if (msg.type === 'fl-add') {
        postMessage({ type: 'result', id: msg.id, value: await flAdd(msg) });
      } else if (msg.type === 'fl-train') {
        const [value, transfer] = await flTrain(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else if (msg.type.startsWith('secagg-')) {
        const [value, transfer] = secaggStep(msg);
        postMessage({ type: 'result', id: msg.id, value }, transfer);
      } else {
        throw new Error(`unknown message type ${msg.type}`);
      }
    } catch (e) {
      const fatal = e instanceof WebAssembly.RuntimeError;
      const name = fatal ? 'DeviceError' : e?.name || 'WebSrError';
      const message = fatal ? `The compute device failed and the runtime was restarted (${e.message})` : e?.message || String(e);
      postMessage({ type: 'error', id: msg.id, error: { name, message }, fatal });
    } finally {
      cancelled.delete(msg.id);
    }
  });
};
