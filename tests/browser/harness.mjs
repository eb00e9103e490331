// What the browser suites share: Chromium's flags and a tiny test runner that prints cargo's
// "test result:" line, so scripts/test.sh sums browser tests with the Rust ones.

// The flags that give headless Debian Chromium a WebGPU adapter without a GPU (SwiftShader, with
// --enable-unsafe-webgpu added) and keep it from reaching the network.
export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Runs named async tests one after another and reports them like cargo test. */
export class Suite {
  #results = [];

  async test(name, fn) {
    // WEBSR_ONLY=regex runs only the matching tests (while developing one).
    if (process.env.WEBSR_ONLY && !new RegExp(process.env.WEBSR_ONLY).test(name)) return;
    const t0 = Date.now();
    try {
      await fn();
      this.#results.push(true);
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      this.#results.push(false);
      console.log(`FAIL ${name}: ${e.stack || e}`);
    }
  }

  /** Prints the summary line and exits with the suite's status. */
  finish(label) {
    const passed = this.#results.filter(Boolean).length;
    const failed = this.#results.length - passed;
    console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed; (${label})`);
    process.exit(failed ? 1 : 0);
  }
}
