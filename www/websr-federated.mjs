// websr federated training, the browser client. Opt-in: the participant's photos are decoded
// and trained on inside the websr worker; only the model update (weight differences plus
// base_version, num_examples and the mean loss) is sent to the aggregator.
//
//   import { FederatedClient } from './websr-federated.mjs';
//   const fl = await FederatedClient.create({ server: 'https://fl.example', backend: 'auto' });
//   await fl.addImages(fileList);
//   await fl.join();
//   const r = await fl.contribute({ onStatus, onProgress, signal });  // one round
//
// The protocol is websr-aggregator's (version 1): join -> poll /v1/round until selected ->
// GET /v1/model (checked against the round's SHA-256 in the worker) -> train -> POST /v1/update,
// or, when the round announces secure aggregation, the masked update through /v1/secagg/...
import { WebSRError, WorkerChannel, toWorkerInput } from './websr.mjs';

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(new DOMException('Cancelled', 'AbortError')); }, { once: true });
});

/** The server's `{"error": ...}` message, or the status text. */
async function serverError(res, what) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body?.error) message = `${res.status}: ${body.error}`;
  } catch { /* not JSON */ }
  return new WebSRError('ServerError', `${what}: ${message}`);
}

export class FederatedClient {
  #channel = new WorkerChannel();
  #server;
  #token = null;
  #patch;
  /** { backend, adapter, note } of the training device. */
  info = null;
  clientId = null;
  images = 0;
  examples = 0;

  /** options: { server (aggregator base URL), backend = 'auto' | 'webgpu' | 'cpu',
   *             degradation = 'mixed' | 'clean' | 'blur' | 'noise' | 'jpeg', patch = 64 } */
  static async create({ server, backend = 'auto', degradation = 'mixed', patch = 64 } = {}) {
    if (!server) throw new WebSRError('WebSrError', 'the aggregator URL is missing');
    const fl = new FederatedClient();
    fl.#server = server.replace(/\/+$/, '');
    fl.#patch = patch;
    fl.info = await fl.#channel.call({ type: 'fl-create', backend, degradation });
    return fl;
  }

  /** Decodes photos into the worker (they never leave it). Returns { images, examples }. */
  async addImages(files) {
    for (const file of files) {
      const [input, transfer] = await toWorkerInput(file);
      const r = await this.#channel.call({ type: 'fl-add', input, patch: this.#patch }, transfer);
      this.images = r.images;
      this.examples = r.examples;
    }
    return { images: this.images, examples: this.examples };
  }

  /** A request with the token; throws only when the aggregator does not answer. */
  async #send(path, init = {}, what = path) {
    const headers = { ...(init.headers || {}) };
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    try {
      return await fetch(`${this.#server}${path}`, { ...init, headers });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new WebSRError('ServerError', `${what}: the aggregator at ${this.#server} does not answer (${e.message})`);
    }
  }

  /** A request that must succeed: a refusal throws with the server's message. */
  async #fetch(path, init = {}, what = path) {
    const res = await this.#send(path, init, what);
    if (!res.ok) throw await serverError(res, what);
    return res;
  }

  /** Registers with the aggregator (once). */
  async join() {
    const r = await (await this.#fetch('/v1/join', { method: 'POST' }, 'join')).json();
    this.#token = r.token;
    this.clientId = r.client_id;
    return r;
  }

  /** The current round as this client sees it (asking also claims a free slot). */
  async round(signal) {
    return (await this.#fetch('/v1/round', { signal }, 'round')).json();
  }

  /** Waits for a round to train in, trains, and sends the update. Resolves to
   *  { round, update: {bytes, baseVersion, numExamples, steps, meanLoss, norm, sentNorm},
   *    accepted } or { finished: true } when the server has finished training.
   *  options: { maxSteps = 50, seed, onStatus(text), onProgress({done, total, loss}), signal,
   *             timeoutMs = 10 min without a slot } */
  async contribute({ maxSteps = 50, seed = (Math.random() * 2 ** 32) >>> 0, onStatus, onProgress, signal, timeoutMs = 600_000 } = {}) {
    if (!this.#token) await this.join();
    const t0 = Date.now();
    let secaggFailures = 0;
    for (;;) {
      signal?.throwIfAborted();
      const round = await this.round(signal);
      if (round.finished) return { finished: true };
      if (!round.selected || round.submitted) {
        if (Date.now() - t0 > timeoutMs) throw new WebSRError('ServerError', 'no round had a free slot in time');
        onStatus?.(`waiting for a slot in round ${round.round} (${round.accepted}/${round.target_clients} updates in)`);
        await sleep(Math.min(10, Math.max(0.1, round.retry_after_s)) * 1000, signal);
        continue;
      }
      onStatus?.(`round ${round.round}: downloading global model v${round.global_version}`);
      const model = await (await this.#fetch('/v1/model', { signal }, 'model')).arrayBuffer();
      onStatus?.(`round ${round.round}: training on your photos`);
      let update;
      try {
        update = await this.#channel.call(
          { type: 'fl-train', model, round: JSON.stringify(round), patch: this.#patch, maxSteps, seed },
          [model], { onProgress, signal });
      } catch (e) {
        // The version moved on during the download: take the new round.
        if (e.name === 'WeightsError' && /SHA-256/.test(e.message)) continue;
        throw e;
      }
      if (update.secureAggregation) {
        // The trained delta stays in the worker: it leaves only masked, through the SecAgg phases.
        const { body, ...rest } = update;
        let done;
        try {
          done = await this.#secureAggregate(round, { onStatus, signal });
        } catch (e) {
          if (e.name === 'AbortError') throw e;
          secaggFailures += 1;
          onStatus?.(`round ${round.round}: secure aggregation: ${e.message}`);
          if (secaggFailures >= 3) throw new WebSRError('ServerError', `secure aggregation failed three times in a row: ${e.message}`);
          continue;
        }
        const summary = { ...rest, bytes: done.maskedBytes };
        const accepted = { round_closed: true, global_version: done.result.global_version, secure_aggregation: done.result };
        return { round: round.round, update: summary, accepted, roundConfig: round };
      }
      onStatus?.(`round ${round.round}: sending the update (${update.body.byteLength} bytes)`);
      const res = await this.#send('/v1/update', {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream' },
        body: update.body,
        signal,
      }, 'update');
      const { body, ...rest } = update;
      const summary = { ...rest, bytes: body.byteLength };
      if (res.status === 409) {
        // Too late (the round closed without us): train in the next one.
        onStatus?.(`round ${round.round}: ${(await serverError(res, 'update')).message}`);
        continue;
      }
      if (!res.ok) throw await serverError(res, 'update');
      return { round: round.round, update: summary, accepted: await res.json(), roundConfig: round };
    }
  }

  /** POSTs one secure-aggregation message; throws with the server's message when refused. */
  async #post(path, body, type, signal) {
    await this.#fetch(path, { method: 'POST', headers: { 'Content-Type': type }, body, signal }, path);
  }

  /** GETs the broadcast of a closed phase (as text), asking again while it is open (425). */
  async #waitFor(path, deadline, signal) {
    for (;;) {
      const res = await this.#send(path, { signal }, path);
      if (res.ok) return res.text();
      if (res.status !== 425) throw await serverError(res, path);
      if (Date.now() > deadline) throw new WebSRError('ServerError', `${path}: the phase did not close in time`);
      await sleep(250, signal);
    }
  }

  /** The update trained in `round` through the session the server announces now: keys, shares,
   *  masked input, unmasking (the protocol is websr_federated::secagg, run in the worker).
   *  Resolves to { session, maskedBytes, result: {session, global_version, survivors} }. */
  async #secureAggregate(round, { onStatus, signal }) {
    // The session may have started over while we trained: take the current one.
    const now = await this.round(signal);
    if (now.global_version !== round.global_version) {
      throw new WebSRError('ServerError', `the global version moved from ${round.global_version} to ${now.global_version} during training`);
    }
    const sa = now.secure_aggregation;
    if (!sa) throw new WebSRError('ServerError', 'the server no longer announces secure aggregation');
    const call = (msg) => this.#channel.call(msg, [], { signal });
    const { session, keys } = await call({ type: 'secagg-join', round: JSON.stringify(now), clientId: this.clientId });
    const phaseMs = Math.max(1, sa.phase_secs) * 1000;
    const roundLeftMs = Math.min(Math.max(0, now.deadline_unix_ms - Date.now()), 24 * 3600 * 1000);
    const q = `?session=${session}`;
    try {
      onStatus?.(`round ${round.round}: secure aggregation session ${session}, sending public keys`);
      await this.#post('/v1/secagg/keys', keys, 'application/json', signal);
      // The keys phase lasts until enough clients have trained; each later one at most phase_secs.
      const directory = await this.#waitFor(`/v1/secagg/keys${q}`, Date.now() + roundLeftMs + 4 * phaseMs, signal);
      onStatus?.(`round ${round.round}: sending encrypted key shares to your neighbours`);
      await this.#post('/v1/secagg/shares', await call({ type: 'secagg-shares', directory }), 'application/json', signal);
      const routed = await this.#waitFor(`/v1/secagg/shares${q}`, Date.now() + 2 * phaseMs, signal);
      const masked = await call({ type: 'secagg-masked', routed });
      onStatus?.(`round ${round.round}: sending the masked update (${masked.byteLength} bytes)`);
      await this.#post('/v1/secagg/masked', masked, 'application/octet-stream', signal);
      const request = await this.#waitFor(`/v1/secagg/unmask${q}`, Date.now() + 2 * phaseMs, signal);
      await this.#post('/v1/secagg/unmask', await call({ type: 'secagg-unmask', request }), 'application/json', signal);
      const result = JSON.parse(await this.#waitFor(`/v1/secagg/result${q}`, Date.now() + 2 * phaseMs, signal));
      return { session, maskedBytes: masked.byteLength, result };
    } catch (e) {
      call({ type: 'secagg-drop' }).catch(() => {});
      throw e;
    }
  }

  /** Polls the public status (which, unlike /v1/round, claims no slot) until the global version
   *  is above `version`, i.e. the round we trained in has closed. */
  async waitForVersion(version, { signal, timeoutMs = 600_000 } = {}) {
    const t0 = Date.now();
    for (;;) {
      const status = await (await this.#fetch('/v1/status', { signal }, 'status')).json();
      if (status.global_version > version || status.finished) return status;
      if (Date.now() - t0 > timeoutMs) throw new WebSRError('ServerError', `the server stayed at version ${status.global_version}`);
      await sleep(500, signal);
    }
  }

  /** Stops the worker; the photos are gone with it. */
  dispose() {
    this.#channel.terminate();
  }
}
