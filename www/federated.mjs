// The opt-in training page: wires the form to FederatedClient (websr-federated.mjs).
// URL parameters: ?server= (aggregator URL, default: this origin), ?backend=auto|webgpu|cpu.
import { FederatedClient } from './websr-federated.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('server').value = params.get('server') || location.origin;
const backend = params.get('backend') || 'auto';

let controller = null;
let client = null;

function showError(e) {
  const box = $('message');
  box.textContent = e?.message || String(e);
  box.hidden = false;
}

function setStatus(text) {
  $('status').textContent = text;
}

/** What the server did with an update: for secure aggregation, whose masked updates it summed. */
function serverCell(a) {
  const sa = a.secure_aggregation;
  if (sa) return `sent masked (secure aggregation, session ${sa.session}): the server summed ${sa.survivors.length} updates -> v${sa.global_version}`;
  return a.round_closed ? `accepted, closed the round -> v${a.global_version}` : 'accepted';
}

function addRow(result) {
  const u = result.update;
  const a = result.accepted;
  const tr = document.createElement('tr');
  const cells = [result.round, u.baseVersion, u.bytes.toLocaleString(), u.steps, u.numExamples,
    u.meanLoss.toFixed(4), u.norm.toFixed(4), u.sentNorm.toFixed(4), u.clipBound.toFixed(4),
    serverCell(a)];
  tr.dataset.clipBound = String(u.clipBound);
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = String(c);
    tr.append(td);
  }
  $('sent').append(tr);
}

/** The server's differential-privacy statement after a round (its own accounting, from the
 *  public /v1/status: what the server claims, which this page cannot check). */
function showPrivacy(status) {
  const dp = status.dp;
  const eps = dp.epsilon_total;
  $('privacy').dataset.epsilon = eps === null ? 'none' : String(eps);
  $('privacy').textContent = dp.noise_multiplier > 0
    ? `The server says it adds Gaussian noise (multiplier ${dp.noise_multiplier}, clip ${dp.clip_norm}) to each round's mean: `
      + `(ε = ${eps?.toFixed(2)}, δ = ${dp.delta}) over ${dp.rounds} round(s) so far, by its accounting.`
    : 'The server adds no noise: its rounds carry no differential-privacy guarantee (ε = ∞). Your updates are '
      + 'still clipped, and only weight changes leave this page.';
}

async function run() {
  $('message').hidden = true;
  const files = [...$('files').files];
  if (files.length === 0) throw new Error('Pick at least one photo to train on.');
  const rounds = Math.max(1, Number($('rounds').value) || 1);
  const maxSteps = Math.max(1, Number($('max-steps').value) || 50);
  controller = new AbortController();
  const { signal } = controller;
  client?.dispose();
  setStatus('starting the training runtime…');
  client = await FederatedClient.create({ server: $('server').value, backend, degradation: $('degradation').value });
  $('backend').textContent = `${client.info.backend} · ${client.info.adapter}`;
  $('backend').dataset.backend = client.info.backend;
  $('backend-note').textContent = client.info.note;
  const floor = client.info.floor;
  $('floor').textContent = `Whatever the server asks, this page trains at least ${floor.min_steps} steps `
    + `(or your maximum below) on batches of at least ${floor.min_batch}, and clips what it sends to an `
    + `L2 norm of at most ${floor.max_clip_norm}.`;
  setStatus(`reading ${files.length} photo(s)…`);
  const { images, examples } = await client.addImages(files);
  setStatus(`${images} photo(s), ${examples} training patches; joining ${$('server').value}…`);
  const joined = await client.join();
  setStatus(`joined as participant ${joined.client_id}`);
  let done = 0;
  while (done < rounds) {
    const result = await client.contribute({
      maxSteps,
      signal,
      onStatus: setStatus,
      onProgress: ({ done: step, total, loss }) => {
        $('progress').max = total;
        $('progress').value = step;
        $('loss').textContent = `step ${step}/${total}, loss ${loss.toFixed(4)}`;
      },
    });
    if (result.finished) {
      setStatus('the server has finished training; thank you');
      return;
    }
    addRow(result);
    done += 1;
    $('rounds-done').dataset.done = String(done);
    $('rounds-done').textContent = `Rounds contributed: ${done}`;
    setStatus(`round ${result.round} sent; waiting for the round to close…`);
    showPrivacy(await client.waitForVersion(result.update.baseVersion, { signal }));
  }
  setStatus(`done: contributed to ${done} round(s); thank you`);
}

$('start').addEventListener('click', async () => {
  $('start').disabled = true;
  $('stop').disabled = false;
  try {
    await run();
  } catch (e) {
    if (e.name === 'AbortError') setStatus('stopped; nothing more is sent');
    else {
      setStatus('failed');
      showError(e);
    }
  } finally {
    $('start').disabled = false;
    $('stop').disabled = true;
    controller = null;
  }
});

$('stop').addEventListener('click', () => controller?.abort());
