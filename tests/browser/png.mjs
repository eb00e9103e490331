// Synthetic test images as PNG bytes, without any image library: deterministic patterns with
// edges, gradients and noise (the repository holds no real images).
import zlib from 'node:zlib';

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** Encodes 8-bit RGB (channels = 3) or RGBA (channels = 4) pixels as a PNG. */
export function encodePng(width, height, channels, pixels) {
  const rows = [];
  for (let y = 0; y < height; y++) {
    rows.push(Buffer.from([0]));
    rows.push(Buffer.from(pixels.subarray(y * width * channels, (y + 1) * width * channels)));
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = channels === 4 ? 6 : 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A photo-like synthetic picture: smooth shading, a few hard edges, stripes and mild noise. */
export function syntheticPng(width, height, { alpha = false, seed = 1 } = {}) {
  const channels = alpha ? 4 : 3;
  const px = new Uint8Array(width * height * channels);
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const u = x / width, v = y / height;
      const disc = (u - 0.6) ** 2 + (v - 0.4) ** 2 < 0.05;
      const stripes = Math.sin(x * 0.7 + y * 0.2) > 0.3 && v > 0.65;
      let r = 40 + 170 * u, g = 60 + 120 * v, b = 200 - 120 * u * v;
      if (disc) [r, g, b] = [230, 200, 40];
      if (stripes) [r, g, b] = [20, 20, 30];
      const n = (rand() - 0.5) * 12;
      const i = (y * width + x) * channels;
      px[i] = Math.max(0, Math.min(255, r + n));
      px[i + 1] = Math.max(0, Math.min(255, g + n));
      px[i + 2] = Math.max(0, Math.min(255, b + n));
      if (alpha) px[i + 3] = Math.round(255 * Math.min(1, 0.25 + u));
    }
  }
  return encodePng(width, height, channels, px);
}

/** Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what websr writes) to {width, height,
 *  channels, pixels}. Anything else is an error: the tests must not silently compare garbage. */
export function decodePng(buf) {
  buf = Buffer.from(buf);
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let off = 8, width, height, channels;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[12] !== 0) throw new Error('only 8-bit non-interlaced PNGs');
      channels = { 2: 3, 6: 4 }[data[9]];
      if (!channels) throw new Error(`PNG colour type ${data[9]} not supported here`);
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? px[y * stride + i - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + i] : 0;
      const c = y > 0 && i >= channels ? px[(y - 1) * stride + i - channels] : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + i] = (line[i] + pred) & 255;
    }
  }
  return { width, height, channels, pixels: px };
}

/** PSNR (dB) over the given channels of two decoded images of equal size. */
export function psnr(a, b, channelList = [0, 1, 2]) {
  if (a.width !== b.width || a.height !== b.height) throw new Error(`size ${a.width}x${a.height} vs ${b.width}x${b.height}`);
  let se = 0, n = 0;
  for (let p = 0; p < a.width * a.height; p++) {
    for (const c of channelList) {
      const d = a.pixels[p * a.channels + c] - b.pixels[p * b.channels + c];
      se += d * d;
      n++;
    }
  }
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / n));
}
