// websr: wavelet super-resolution in the browser. The public JavaScript API.
//
//   import { WebSR } from './websr.mjs';
//   const sr = await WebSR.create({ backend: 'auto' });   // the default x4 model, or { model: NAME }
//   const { imageData, png } = await sr.upscale(file, { scale: 4, onProgress, signal });
//
// Everything heavy runs in a module Web Worker (websr-worker.mjs + the wasm in websr.js /
// websr_bg.wasm, or websr-relaxed.js / websr-relaxed_bg.wasm where the browser has relaxed SIMD;
// all next to this file), so the page never freezes. Model files are fetched from
// `modelBase` (default: ./models/ next to this file) with download progress, checked against the
// SHA-256 in its manifest.json, and kept in the Cache API so the next visit works offline.

const MODEL_CACHE = 'websr-models-v1';

/** An error with a `name` the page can switch on: DecodeError, TooLargeError, DeviceError (the
 *  device failed), UnsupportedError (WebGPU asked for but not available), WeightsError,
 *  ModelError, AbortError, WebSrError. */
export class WebSRError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

function errorFrom(e) {
  if (e && e.name === 'CancelledError') return new DOMException('Cancelled', 'AbortError');
  return new WebSRError(e?.name || 'WebSrError', e?.message || String(e));
}

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function openCache() {
  try {
    return globalThis.caches ? await caches.open(MODEL_CACHE) : null;
  } catch {
    return null; // Cache API unavailable (insecure origin, private mode): just download.
  }
}

/** Reads a Response body, reporting {loaded, total} as it streams. */
async function readWithProgress(response, onProgress) {
  const total = Number(response.headers.get('content-length')) || 0;
  if (!response.body || !onProgress) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress({ loaded, total });
  }
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** The model manifest: network first (to see new models), the cached copy when offline. */
export async function loadManifest(modelBase = defaultModelBase()) {
  const url = new URL('manifest.json', modelBase).href;
  const cache = await openCache();
  try {
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    if (cache) await cache.put(url, response.clone());
    return await response.json();
  } catch (e) {
    const cached = cache && (await cache.match(url));
    if (cached) return cached.json();
    throw new WebSRError('ModelError', `Could not load the model list from ${url}: ${e.message}`);
  }
}

/** The name of the manifest's default model for `scale` (websr ship --default). */
export async function defaultModelName(scale = 4, modelBase = defaultModelBase()) {
  const manifest = await loadManifest(modelBase);
  const entry = manifest.models.find((m) => m.default && m.scale === scale);
  if (!entry) throw new WebSRError('ModelError', `The model list names no default model for x${scale}`);
  return entry.name;
}

/** Fetches a model's weights, verified against the manifest's SHA-256; cached for next time.
 *  Returns { bytes, entry, fromCache }. */
export async function fetchModel(name, { modelBase = defaultModelBase(), onProgress } = {}) {
  const manifest = await loadManifest(modelBase);
  const entry = manifest.models.find((m) => m.name === name);
  if (!entry) {
    const known = manifest.models.map((m) => m.name).join(', ');
    throw new WebSRError('ModelError', `Unknown model "${name}" (available: ${known})`);
  }
  const url = new URL(entry.file, modelBase).href;
  const cache = await openCache();
  const cached = cache && (await cache.match(url));
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    if ((await sha256Hex(bytes)) === entry.sha256) {
      onProgress?.({ loaded: bytes.length, total: bytes.length, fromCache: true });
      return { bytes, entry, fromCache: true };
    }
    await cache.delete(url); // stale or corrupted: download again
  }
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new WebSRError('ModelError', `Could not download ${entry.file}: ${e.message}`);
  }
  if (!response.ok) throw new WebSRError('ModelError', `Could not download ${entry.file}: HTTP ${response.status}`);
  const bytes = await readWithProgress(response, onProgress);
  const hash = await sha256Hex(bytes);
  if (hash !== entry.sha256) {
    throw new WebSRError('ModelError', `${entry.file} is corrupted (SHA-256 ${hash.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…)`);
  }
  if (cache) await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  return { bytes, entry, fromCache: false };
}

function defaultModelBase() {
  return new URL('./models/', import.meta.url).href;
}

/** Turns any accepted input into a message for the worker (and its transfer list). */
export async function toWorkerInput(input) {
  if (input instanceof Blob) {
    const bytes = await input.arrayBuffer();
    return [{ kind: 'bytes', bytes, type: input.type }, [bytes]];
  }
  if (typeof ImageData !== 'undefined' && input instanceof ImageData) {
    const copy = new Uint8ClampedArray(input.data);
    return [{ kind: 'rgba', rgba: copy.buffer, width: input.width, height: input.height }, [copy.buffer]];
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    return [{ kind: 'bitmap', bitmap: input }, [input]];
  }
  throw new WebSRError('DecodeError', 'Input must be a File, Blob, ImageBitmap or ImageData');
}

/** One websr worker and its request/response bookkeeping (used by WebSR and FederatedClient).
 *  A trapped wasm instance (a panic, a lost GPU device) cannot be trusted again: the channel
 *  fails what is in flight and drops the worker; the next call starts a fresh one. */
export class WorkerChannel {
  #worker = null;
  #nextId = 1;
  #pending = new Map();
  #relaxedSimd;

  /** relaxedSimd = true: the worker loads the relaxed-SIMD build where the browser has relaxed
   *  SIMD (false: the plain SIMD build everywhere, for comparisons). */
  constructor({ relaxedSimd = true } = {}) {
    this.#relaxedSimd = relaxedSimd;
  }

  /** Whether a worker is running (false at first and after a crash). */
  get alive() {
    return this.#worker !== null;
  }

  /** Sends `message` and resolves with the worker's result. `onProgress(msg)` sees every
   *  progress message ({done, total, ...}); `signal` cancels. */
  call(message, transfer = [], { onProgress, signal } = {}) {
    const worker = this.#ensureWorker();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, onProgress };
      if (signal) {
        const abort = () => worker.postMessage({ type: 'cancel', id });
        signal.addEventListener('abort', abort, { once: true });
        entry.cleanup = () => signal.removeEventListener('abort', abort);
      }
      this.#pending.set(id, entry);
      worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** Stops the worker; what is in flight fails with `error`. */
  terminate(error = new WebSRError('WebSrError', 'disposed')) {
    this.#worker?.terminate();
    this.#worker = null;
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
  }

  #ensureWorker() {
    if (this.#worker) return this.#worker;
    const url = new URL('./websr-worker.mjs', import.meta.url);
    if (!this.#relaxedSimd) url.searchParams.set('kernel', 'simd128');
    const worker = new Worker(url, { type: 'module', name: 'websr' });
    worker.onmessage = (e) => this.#onMessage(e.data);
    worker.onerror = (e) => this.terminate(new WebSRError('DeviceError', `The websr worker crashed: ${e.message || 'unknown error'}`));
    this.#worker = worker;
    return worker;
  }

  #onMessage(msg) {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') {
      p.onProgress?.(msg);
      return;
    }
    this.#pending.delete(msg.id);
    p.cleanup?.();
    if (msg.type === 'result') p.resolve(msg.value);
    else {
      const err = errorFrom(msg.error);
      if (msg.fatal) this.terminate(err);
      p.reject(err);
    }
  }
}

/** How many CPU workers share an upscale's tiles: one per core the browser reports, at most 8,
 *  and at most two per GiB of device memory where the browser tells it (each worker holds its own
 *  wasm heap: the model plus a tile's feature maps, up to ~300 MiB for the largest tiles). */
export function defaultWorkerCount() {
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const memoryBound = navigator.deviceMemory ? Math.max(1, Math.floor(navigator.deviceMemory * 2)) : 8;
  return Math.min(cores, 8, memoryBound);
}

/** The largest tile side (LR pixels) a pooled CPU upscale uses: bounds each worker's memory and
 *  gives the pool enough tiles to share on large images. */
const POOL_MAX_TILE = 256;

export class WebSR {
  #channel;
  /** The other workers of the CPU pool (the first worker, #channel, is the coordinator). */
  #pool = [];
  /** The loaded model's bytes, for pool workers started later. */
  #modelBytes = null;
  #options;
  /** { backend, adapter, note, scale, arch, autoTile, model, fromCache } of the loaded model. */
  info = null;

  constructor(options) {
    this.#options = options;
    this.#channel = new WorkerChannel(this.#channelOptions());
  }

  #channelOptions() {
    return { relaxedSimd: this.#options.relaxedSimd !== false };
  }

  /** Starts the worker and loads `model` (a name from the manifest).
   *  options: { model (default: the manifest's default for `scale`), scale = 4,
   *             backend = 'auto' | 'webgpu' | 'cpu', modelBase,
   *             cpuSimd = true (false: the scalar CPU kernels, for comparisons),
   *             directConv = true (false: burn's im2col + GEMM convolution, for comparisons),
   *             relaxedSimd = true (false: the plain-SIMD wasm build even where the browser has
   *               relaxed SIMD's fused multiply-add; info.cpuKernel says which kernel runs),
   *             workers = 'auto' | n (CPU workers sharing an upscale's tiles; 'auto':
   *               defaultWorkerCount(); WebGPU always runs one),
   *             onDownloadProgress({loaded, total, fromCache}) } */
  static async create(options = {}) {
    const sr = new WebSR({ backend: 'auto', ...options });
    const model = options.model ?? (await defaultModelName(options.scale ?? 4, options.modelBase));
    await sr.loadModel(model);
    return sr;
  }

  /** Switches to another model (same worker and device). */
  async loadModel(name) {
    const { bytes, entry, fromCache } = await fetchModel(name, {
      modelBase: this.#options.modelBase,
      onProgress: this.#options.onDownloadProgress,
    });
    this.#stopPool();
    this.#modelBytes = bytes.slice();
    const info = await this.#call(this.#loadMessage(bytes), [bytes.buffer]);
    this.info = { ...info, model: entry.name, fromCache };
    this.#options.model = name;
    return this.info;
  }

  #loadMessage(bytes, backend = this.#options.backend) {
    return {
      type: 'load', weights: bytes.buffer, backend,
      cpuSimd: this.#options.cpuSimd !== false, directConv: this.#options.directConv !== false,
    };
  }

  /** Workers an upscale is shared among (1: no pool; WebGPU runs one). */
  get workerCount() {
    if (this.info?.backend !== 'cpu') return 1;
    const n = this.#options.workers ?? 'auto';
    return Math.max(1, n === 'auto' ? defaultWorkerCount() : Math.floor(n));
  }

  /** Upscales a File, Blob, ImageBitmap or ImageData.
   *  options: { scale (checked against the model), tileSize = 'auto' | number (LR pixels),
   *             tta = false, onProgress({done, total, preview?}), signal (AbortSignal) }
   *  A diffusion model (info.kind === 'diffusion') samples instead: { steps = info.defaultSteps
   *  (DDIM), strength = info.defaultStrength (the fraction of the noise schedule walked back),
   *  seed = 0, yoda = info.yodaTrained, previewEvery = 0 }; the same steps, strength and seed
   *  give the native `websr upscale --steps --strength --seed` image, and every `previewEvery`
   *  steps onProgress gets `preview`, an ImageData of the current estimate (images sampled
   *  whole, up to 256x256 input pixels; larger ones are sampled in tiles of `diffusionTile` =
   *  'auto' (128) LR pixels that share one noise, shared by the CPU pool like one-pass tiles).
   *  Resolves to { imageData, png (Blob), width, height, ms, tiles | steps }. */
  async upscale(input, { scale, tileSize = 'auto', tta = false, onProgress, signal, steps, strength, seed = 0, yoda, previewEvery = 0, diffusionTile = 'auto' } = {}) {
    if (scale && this.info && scale !== this.info.scale) {
      throw new WebSRError('ModelError', `Model ${this.info.model} upscales x${this.info.scale}, not x${scale}; load a x${scale} model`);
    }
    signal?.throwIfAborted();
    const [message, transfer] = await toWorkerInput(input);
    const tile = tileSize === 'auto' ? 0 : Math.max(16, Math.floor(tileSize));
    const t0 = performance.now();
    const progress = onProgress && ((m) => onProgress({
      done: m.done,
      total: m.total,
      preview: m.preview && new ImageData(new Uint8ClampedArray(m.preview.rgba), m.preview.width, m.preview.height),
    }));
    const request = {
      type: 'upscale', input: message, tile, tta,
      steps: steps === undefined ? undefined : Math.max(1, Math.floor(steps)),
      strength: strength === undefined ? undefined : Math.min(1, Math.max(1e-3, Number(strength))),
      seed: Math.floor(seed) >>> 0,
      yoda: yoda ?? Boolean(this.info?.yodaTrained),
      previewEvery: Math.max(0, Math.floor(previewEvery)),
      diffusionTile: diffusionTile === 'auto' ? 0 : Math.max(1, Math.floor(diffusionTile)),
    };
    const pooled = this.workerCount > 1;
    const diffusion = this.info?.kind === 'diffusion';
    const how = { onProgress: progress, signal };
    const out = !pooled
      ? await this.#call(request, transfer, how)
      : diffusion
        ? await this.#pooledDiffusion(request, transfer, how)
        : await this.#pooledUpscale(request, transfer, how);
    const imageData = new ImageData(new Uint8ClampedArray(out.rgba), out.width, out.height);
    const png = new Blob([out.png], { type: 'image/png' });
    return { imageData, png, width: out.width, height: out.height, tiles: out.tiles, steps: out.steps, ms: performance.now() - t0 };
  }

  /** The quality (1-100, libjpeg scale) a JPEG File or Blob was saved at, read from its
   *  quantisation tables without decoding; null for anything that is not a JPEG. Below
   *  about 75 the artefacts show when upscaled: a model trained on them (`photo`) does better. */
  async jpegQuality(input) {
    if (!(input instanceof Blob)) return null;
    const bytes = await input.arrayBuffer();
    const head = new Uint8Array(bytes, 0, Math.min(2, bytes.byteLength));
    if (head[0] !== 0xff || head[1] !== 0xd8) return null;
    return this.#call({ type: 'jpeg-quality', bytes }, [bytes]);
  }

  /** Stops the workers and frees their memory. */
  dispose() {
    this.#stopPool();
    this.#channel.terminate();
  }

  /** A one-pass upscale shared by the pool: the first worker plans the tiles and blends them in
   *  plan order, every worker (the first too) computes tiles as it becomes free. The blend order
   *  is fixed, so the bytes are those of one worker; progress and cancel stay per tile. */
  async #pooledUpscale(request, transfer, { onProgress, signal }) {
    const workers = [this.#channel, ...(await this.#startPool())];
    const tile = request.tile === 0 ? Math.min(this.info.autoTile, POOL_MAX_TILE) : request.tile;
    const start = { type: 'tiles-start', input: request.input, tile, tta: request.tta, minTiles: workers.length };
    const { job, inputs } = await this.#call(start, transfer, { signal });
    const run = (worker, index) => {
      const { data, height, width } = inputs[index];
      return worker.call({ type: 'tile-run', data, height, width, tta: request.tta }, [data]);
    };
    const blended = (done) => onProgress?.({ done, total: inputs.length });
    return this.#shareTiles(workers, job, inputs.length, run, blended, signal);
  }

  /** A diffusion upscale shared by the pool: the first worker plans the tiles (and YODA's map,
   *  once for the whole image) and hands each out as a task that any worker samples; tiles are
   *  blended in plan order, so the bytes are those of one worker. An image sampled whole (one
   *  tile, with previews) runs in the first worker alone. Progress counts the steps of all
   *  tiles; cancel stops every worker between steps. */
  async #pooledDiffusion(request, transfer, { onProgress, signal }) {
    const start = await this.#call({ ...request, type: 'dtiles-start' }, transfer, { onProgress, signal });
    if (start.whole) return start.whole;
    const { job, tasks, steps: total } = start;
    const workers = [this.#channel, ...(await this.#startPool())];
    const stepsOf = new Array(tasks.length).fill(0);
    let reported = 0;
    const report = () => {
      const done = stepsOf.reduce((a, b) => a + b, 0);
      if (done > reported) onProgress?.({ done: (reported = done), total });
    };
    const run = (worker, index) => {
      const task = tasks[index];
      const transferred = [task.data.buffer, ...(task.importance ? [task.importance.data.buffer] : [])];
      const onStep = (m) => {
        stepsOf[index] = m.done;
        report();
      };
      return worker.call({ ...request, type: 'dtile-run', task, input: undefined }, transferred, { onProgress: onStep, signal });
    };
    const out = await this.#shareTiles(workers, job, tasks.length, run, null, signal);
    return { ...out, steps: total };
  }

  /** Runs `count` tiles of the coordinator's `job` on `workers`: each computes tiles as it becomes
   *  free (`run(worker, index)` resolves to the tile's output message), and the first worker
   *  blends them in plan order, one at a time (`onBlended(added)` after each). Any failure or a
   *  cancel stops the others after their current tile and drops the job. */
  async #shareTiles(workers, job, count, run, onBlended, signal) {
    const outputs = new Map();
    let next = 0;
    let added = 0;
    let blending = Promise.resolve();
    const blendReady = () => {
      blending = blending.then(async () => {
        while (outputs.has(added)) {
          const o = outputs.get(added);
          outputs.delete(added);
          await this.#channel.call({ type: 'tiles-add', job, index: added, ...o }, [o.data]);
          added += 1;
          onBlended?.(added);
        }
      });
      return blending;
    };
    const work = async (worker) => {
      while (next < count) {
        signal?.throwIfAborted();
        const index = next++;
        outputs.set(index, await run(worker, index));
        await blendReady();
      }
    };
    try {
      await Promise.all(workers.map(work));
      await blendReady();
      signal?.throwIfAborted();
      return await this.#channel.call({ type: 'tiles-finish', job });
    } catch (e) {
      next = count; // the other workers stop after their current tile
      this.#channel.alive && this.#channel.call({ type: 'tiles-drop', job }).catch(() => {});
      if (signal?.aborted) throw new DOMException('Cancelled', 'AbortError');
      throw e;
    }
  }

  /** Starts (once per model) the pool workers beyond the first, each with the model on the CPU. */
  async #startPool() {
    const want = this.workerCount - 1;
    while (this.#pool.length < want) this.#pool.push(new WorkerChannel(this.#channelOptions()));
    await Promise.all(this.#pool.map(async (w) => {
      if (w.alive && w.loaded) return;
      const bytes = this.#modelBytes.slice();
      await w.call(this.#loadMessage(bytes, 'cpu'), [bytes.buffer]);
      w.loaded = true;
    }));
    return this.#pool;
  }

  #stopPool() {
    for (const w of this.#pool) w.terminate();
    this.#pool = [];
  }

  async #call(message, transfer = [], options = {}) {
    // An upscale of either kind, pooled ('tiles-start', 'dtiles-start') or not, needs the model in the first worker.
    if (!this.#channel.alive && ['upscale', 'tiles-start', 'dtiles-start'].includes(message.type) && this.info) {
      // The previous worker died: bring the model back before running.
      const { bytes } = await fetchModel(this.#options.model, { modelBase: this.#options.modelBase });
      await this.#channel.call(this.#loadMessage(bytes), [bytes.buffer]);
    }
    return this.#channel.call(message, transfer, options);
  }
}
