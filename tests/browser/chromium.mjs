// The flags that give headless Debian Chromium a WebGPU adapter without a GPU (SwiftShader, with
// --enable-unsafe-webgpu added) and keep it from reaching the network.
export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
