// The websr web app: a queue of images upscaled one after another by the WebSR library.
import { WebSR, loadManifest } from './websr.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  sr: null,
  manifest: null,
  queue: [],
  running: false,
  loading: null, // the Promise of the model being loaded
  selected: null,
};

function showMessage(text, kind = 'error') {
  const box = $('message');
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = !text;
}

// What a person should read for each kind of failure.
function explain(err, file) {
  switch (err?.name) {
    case 'DecodeError':
      return `${file?.name ?? 'This file'} is not an image websr can read. Try PNG, JPEG, WebP, BMP, GIF or AVIF.`;
    case 'TooLargeError':
      return `${file?.name ?? 'This image'} is too large for this device: ${err.message}`;
    case 'UnsupportedError':
      return `WebGPU cannot be used here (${err.message}). Choose the CPU backend, or auto.`;
    case 'DeviceError':
      return `The GPU stopped working (${err.message}). websr restarts its runtime; please try again.`;
    case 'ModelError':
    case 'WeightsError':
      return `The model could not be loaded: ${err.message}`;
    default:
      return err?.message ?? String(err);
  }
}

const scale = () => Number(document.querySelector('input[name=scale]:checked').value);

function fillModels() {
  const select = $('model');
  const s = scale();
  const models = state.manifest.models.filter((m) => m.scale === s);
  // The manifest's default first, then the other fast WaveLR models, the slow generative
  // diffusion models last.
  const rank = (m) => (m.default ? 0 : m.arch === 'wavelr' ? 1 : m.kind === 'diffusion' ? 3 : 2);
  models.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  select.replaceChildren(...models.map((m) => {
    const o = document.createElement('option');
    o.value = m.name;
    const kind = m.kind === 'diffusion' ? 'diffusion, ' : '';
    o.textContent = `${m.name} (${kind}Set5 ${m.set5[0].toFixed(2)} dB)`;
    return o;
  }));
  const wanted = params.get('model');
  if (wanted && models.some((m) => m.name === wanted)) select.value = wanted;
}

async function loadSelectedModel() {
  const name = $('model').value;
  const status = $('model-status');
  const load = async () => {
    status.textContent = `loading ${name}…`;
    const onDownloadProgress = ({ loaded, total, fromCache }) => {
      status.textContent = fromCache
        ? `${name} from cache`
        : `downloading ${name}: ${total ? Math.round((100 * loaded) / total) + '%' : (loaded / 1e6).toFixed(1) + ' MB'}`;
    };
    if (!state.sr) {
      const workers = params.get('workers') ? Number(params.get('workers')) : 'auto';
      state.sr = await WebSR.create({ model: name, backend: params.get('backend') || 'auto', workers, onDownloadProgress });
    } else {
      await state.sr.loadModel(name);
    }
    const info = state.sr.info;
    status.textContent = `${info.model} ready${info.fromCache ? ' (from cache)' : ''}`;
    status.dataset.fromCache = String(info.fromCache);
    const badge = $('backend');
    const workers = state.sr.workerCount;
    const kernel = { 'relaxed-simd': ' · SIMD + FMA', simd128: ' · SIMD', portable: '' }[info.cpuKernel] ?? '';
    badge.textContent = info.backend === 'webgpu'
      ? `WebGPU · ${info.adapter}`
      : `CPU (wasm${kernel})${workers > 1 ? ` · ${workers} workers` : ''}`;
    badge.dataset.workers = String(workers);
    badge.dataset.backend = info.backend;
    const diffusion = info.kind === 'diffusion';
    if (diffusion) {
      const shared = workers > 1 ? `, shared by the ${workers} workers` : '';
      badge.title = `${info.arch}: sampled step by step (whole up to 256x256 input pixels, in tiles above${shared})`;
      $('yoda').checked = info.yodaTrained;
      // The model's own defaults, measured on held-out images (its card).
      $('steps').value = String(info.defaultSteps);
      $('strength').value = String(info.defaultStrength);
    } else {
      badge.dataset.autoTile = String(info.autoTile);
      badge.title = `tiles of ${info.autoTile}x${info.autoTile} input pixels (largest buffer ${(info.maxBufferBytes / 2 ** 20).toFixed(0)} MiB)`;
    }
    $('diffusion-controls').hidden = !diffusion;
    $('diffusion-note').hidden = !diffusion;
    $('tta-control').hidden = diffusion;
    $('backend-note').textContent = info.note;
  };
  state.loading = load().catch((e) => {
    status.textContent = 'model not loaded';
    showMessage(explain(e));
    throw e;
  });
  return state.loading;
}

function addFiles(files) {
  for (const file of files) {
    const item = { file, status: 'waiting', done: 0, total: 0, el: null, controller: null };
    state.queue.push(item);
    render(item);
  }
  runQueue();
}

function render(item) {
  if (!item.el) {
    const li = document.createElement('li');
    li.dataset.testid = 'item';
    li.innerHTML = `<span class="name"></span><progress max="1" value="0"></progress>
      <span class="status"></span><span class="actions"></span>`;
    li.querySelector('.name').textContent = item.file.name || 'pasted image';
    $('queue').append(li);
    item.el = li;
  }
  const li = item.el;
  li.dataset.status = item.status;
  li.dataset.done = String(item.done);
  li.dataset.total = String(item.total);
  li.querySelector('progress').value = item.total ? item.done / item.total : item.status === 'done' ? 1 : 0;
  const status = li.querySelector('.status');
  const actions = li.querySelector('.actions');
  actions.replaceChildren();
  const button = (label, testid, onClick) => {
    const b = document.createElement('button');
    b.textContent = label;
    b.dataset.testid = testid;
    b.onclick = onClick;
    actions.append(b);
  };
  switch (item.status) {
    case 'waiting':
      status.textContent = 'waiting';
      button('Remove', 'remove', () => {
        item.status = 'cancelled';
        render(item);
      });
      break;
    case 'running':
      status.textContent = item.total ? `${item.unit} ${item.done}/${item.total}` : 'decoding…';
      button('Cancel', 'cancel', () => item.controller.abort());
      break;
    case 'done': {
      const r = item.result;
      status.textContent = `${r.width}×${r.height} in ${(r.ms / 1000).toFixed(2)} s`;
      status.dataset.ms = String(Math.round(r.ms));
      const a = document.createElement('a');
      a.href = item.url;
      a.download = `${(item.file.name || 'image').replace(/\.[^.]+$/, '')}-websr-x${item.scale}.png`;
      a.textContent = 'Download PNG';
      a.dataset.testid = 'download';
      a.dataset.width = String(r.width);
      a.dataset.height = String(r.height);
      actions.append(a);
      button('Compare', 'compare', () => showViewer(item));
      if (item.suggestion) {
        const { quality, model } = item.suggestion;
        const note = document.createElement('span');
        note.className = 'suggestion';
        note.dataset.testid = 'photo-suggestion';
        note.dataset.quality = String(quality);
        note.textContent = `Saved as JPEG quality ${quality}: this model sharpens the compression artefacts too. `
          + `${model} was trained on compressed, noisy photos.`;
        actions.append(note);
        button(`Redo with ${model}`, 'use-photo-model', () => redoWith(item, model));
      }
      break;
    }
    case 'cancelled':
      status.textContent = 'cancelled';
      break;
    case 'error':
      status.textContent = item.error;
      break;
  }
}

async function runQueue() {
  if (state.running) return;
  state.running = true;
  try {
    for (;;) {
      const item = state.queue.find((i) => i.status === 'waiting');
      if (!item) break;
      await process(item);
    }
  } finally {
    state.running = false;
  }
}

async function process(item) {
  item.status = 'running';
  item.controller = new AbortController();
  render(item);
  try {
    await state.loading;
    item.scale = state.sr.info.scale;
    const diffusion = state.sr.info.kind === 'diffusion';
    const steps = Math.max(1, Number($('steps').value) || 20);
    item.unit = diffusion ? 'step' : 'tile';
    item.previews = 0;
    const result = await state.sr.upscale(item.file, {
      scale: scale(),
      tta: $('tta').checked,
      tileSize: params.get('tile') ? Number(params.get('tile')) : 'auto',
      steps,
      strength: Math.min(1, Math.max(0.01, Number($('strength').value) || 1)),
      seed: Number($('seed').value) || 0,
      yoda: $('yoda').checked,
      previewEvery: Math.max(1, Math.round(steps / 10)),
      signal: item.controller.signal,
      onProgress: ({ done, total, preview }) => {
        item.done = done;
        item.total = total;
        if (preview) {
          item.previews += 1;
          item.el.dataset.previews = String(item.previews);
          showPreview(item, preview);
        }
        render(item);
      },
    });
    item.result = result;
    item.url = URL.createObjectURL(result.png);
    item.suggestion = await photoModelSuggestion(item.file);
    item.status = 'done';
    render(item);
    showMessage('');
    showViewer(item);
  } catch (e) {
    if (e.name === 'AbortError') {
      item.status = 'cancelled';
    } else {
      item.status = 'error';
      item.error = explain(e, item.file);
      showMessage(item.error);
    }
    render(item);
  }
}

/** For a JPEG saved below quality 75 upscaled by a model trained on clean inputs: the shipped
 *  photo model of this scale ({quality, model}), else null. The quality comes from the file's
 *  quantisation tables (no decoding). */
async function photoModelSuggestion(file) {
  const current = state.manifest.models.find((m) => m.name === $('model').value);
  const photo = state.manifest.models.find((m) => m.degradation === 'photo' && m.scale === current?.scale);
  if (!photo || current.degradation) return null;
  const quality = await state.sr.jpegQuality(file).catch(() => null);
  return quality !== null && quality < 75 ? { quality, model: photo.name } : null;
}

/** Switches to `model` and upscales the item's file again. */
async function redoWith(item, model) {
  $('model').value = model;
  await loadSelectedModel();
  addFiles([item.file]);
}

// A diffusion preview: the current estimate, drawn where the result will appear.
function showPreview(item, imageData) {
  showViewer(item, imageData);
  $('viewer-title').textContent = `${item.file.name || 'pasted image'}: step ${item.done}/${item.total}`;
}

function showViewer(item, imageData = item.result.imageData) {
  state.selected = item;
  const canvas = $('after');
  canvas.width = imageData.width;
  canvas.height = imageData.height;
  canvas.getContext('2d').putImageData(imageData, 0, 0);
  const before = $('before');
  URL.revokeObjectURL(before.src);
  before.src = URL.createObjectURL(item.file);
  $('viewer-title').textContent = item.file.name || 'pasted image';
  $('viewer').hidden = false;
  applyZoom();
}

function applyZoom() {
  const item = state.selected;
  if (!item) return;
  const { width, height } = $('after');
  const z = $('zoom').value;
  const frame = $('frame');
  frame.classList.toggle('fit', z === 'fit');
  frame.style.width = z === 'fit' ? '' : `${width * Number(z) / devicePixelRatio}px`;
  frame.style.aspectRatio = `${width} / ${height}`;
}

function applySplit() {
  $('before-clip').style.clipPath = `inset(0 ${100 - Number($('split').value)}% 0 0)`;
}

async function main() {
  try {
    state.manifest = await loadManifest(new URL('./models/', location.href).href);
  } catch (e) {
    showMessage(explain(e));
    return;
  }
  fillModels();
  const wantedScale = params.get('scale');
  if (wantedScale) {
    const radio = document.querySelector(`input[name=scale][value="${wantedScale}"]`);
    if (radio) {
      radio.checked = true;
      fillModels();
    }
  }
  loadSelectedModel().catch(() => {});

  for (const radio of document.querySelectorAll('input[name=scale]')) {
    radio.onchange = () => {
      fillModels();
      loadSelectedModel().catch(() => {});
    };
  }
  $('model').onchange = () => loadSelectedModel().catch(() => {});
  $('file').onchange = (e) => {
    addFiles([...e.target.files]);
    e.target.value = '';
  };
  const drop = $('drop');
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add('over');
  };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    addFiles([...e.dataTransfer.files]);
  };
  drop.onkeydown = (e) => {
    if (e.key === 'Enter' || e.key === ' ') $('file').click();
  };
  document.addEventListener('paste', (e) => {
    const files = [...e.clipboardData.files];
    if (files.length) addFiles(files);
  });
  $('zoom').onchange = applyZoom;
  $('split').oninput = applySplit;
  applySplit();
}

main();
