//! Tiled inference: any image size in bounded memory, with output identical to a single pass.
//!
//! The low-resolution image is cut into tiles whose *cores* overlap by `overlap` pixels; each
//! tile is run with `halo` extra pixels of context on every side (clipped at the image border),
//! and only its core is kept. When `halo` covers the model's receptive field, every kept pixel
//! saw exactly the context it would have seen untiled, so tiled == untiled; the overlaps are
//! blended with linear ramps, which hides seams when a caller chooses a smaller halo.
//!
//! The plan and the blending are plain CPU code with no tensor in sight, so the native CLI and the
//! browser worker (which must read tiles back asynchronously) drive the same logic.

use crate::image::{Planar, Rect};

/// One tile, in low-resolution pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The region this tile contributes to (including blend overlap).
    pub core: Rect,
    /// The region fed to the model: the core plus halo, clipped to the image.
    pub input: Rect,
}

/// Start offsets of tiles of length `tile` with the given overlap covering `len`.
fn starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let step = tile - overlap;
    let mut s: Vec<usize> = (0..)
        .map(|i| i * step)
        .take_while(|&p| p + tile < len)
        .collect();
    s.push(len - tile); // the last tile ends exactly at the border
    s.dedup();
    s
}

/// Plans tiles of at most `tile x tile` core pixels over an `h x w` image.
pub fn plan(h: usize, w: usize, tile: usize, overlap: usize, halo: usize) -> Vec<Tile> {
    plan_grid(h, w, [tile, tile], overlap, halo)
}

/// Like [`plan`], with at least `min_tiles` tiles where the image has the rows for them: when
/// square tiles are too few (a small image, a large `tile`), horizontal strips instead. A pool
/// of `n` workers asks for `n` tiles; strips rather than smaller squares because each tile pays
/// for its halo, and a strip has it on two sides only.
pub fn plan_at_least(
    h: usize,
    w: usize,
    tile: usize,
    overlap: usize,
    halo: usize,
    min_tiles: usize,
) -> Vec<Tile> {
    let squares = plan(h, w, tile, overlap, halo);
    if squares.len() >= min_tiles {
        return squares;
    }
    let overlap = overlap.min(tile / 2);
    // n strips of height t cover h when t + (n - 1) * (t - overlap) >= h.
    let rows = (h + (min_tiles - 1) * overlap).div_ceil(min_tiles).max(8);
    plan_grid(h, w, [rows.min(tile), tile], overlap, halo)
}

/// Plans tiles of at most `tile_h x tile_w` core pixels.
fn plan_grid(
    h: usize,
    w: usize,
    [tile_h, tile_w]: [usize; 2],
    overlap: usize,
    halo: usize,
) -> Vec<Tile> {
    assert!(tile_h > 0 && tile_w > 0, "tile size must be positive");
    let mut tiles = Vec::new();
    for &y in &starts(h, tile_h, overlap.min(tile_h / 2)) {
        for &x in &starts(w, tile_w, overlap.min(tile_w / 2)) {
            let core = Rect {
                y,
                x,
                h: tile_h.min(h),
                w: tile_w.min(w),
            };
            let iy = y.saturating_sub(halo);
            let ix = x.saturating_sub(halo);
            let input = Rect {
                y: iy,
                x: ix,
                h: (y + core.h + halo).min(h) - iy,
                w: (x + core.w + halo).min(w) - ix,
            };
            tiles.push(Tile { core, input });
        }
    }
    tiles
}

/// The largest core tile side (LR pixels, a multiple of 8, at least 16) whose biggest buffer, with
/// `halo` pixels of context on each side, stays under half of `max_buffer_bytes`. The other half
/// is headroom for the buffers that are alive at the same time. Browsers give each GPU a different
/// `maxStorageBufferBindingSize` / `maxBufferSize`; sizing from them is what lets large photos
/// run instead of losing the device.
pub fn tile_for_buffer_limit(
    peak_bytes_per_lr_pixel: u64,
    halo: usize,
    max_buffer_bytes: u64,
) -> usize {
    let budget = (max_buffer_bytes / 2) as f64;
    let side_with_halo = (budget / peak_bytes_per_lr_pixel.max(1) as f64).sqrt() as usize;
    let core = side_with_halo.saturating_sub(2 * halo);
    (core / 8 * 8).clamp(16, 1024)
}

/// Accumulates upscaled tiles into the output with blend weights.
pub struct Blender {
    scale: usize,
    lr_h: usize,
    lr_w: usize,
    overlap: usize,
    acc: Planar,
    weight: Vec<f32>,
}

impl Blender {
    pub fn new(channels: usize, lr_h: usize, lr_w: usize, scale: usize, overlap: usize) -> Self {
        Self {
            scale,
            lr_h,
            lr_w,
            overlap,
            acc: Planar::zeros(channels, lr_h * scale, lr_w * scale),
            weight: vec![0.0; lr_h * scale * lr_w * scale],
        }
    }

    /// Ramp weight along one axis for output coordinate `o` inside a core `[start, start+len)`:
    /// rises over `overlap * scale` pixels at an edge that borders another tile, 1 elsewhere.
    fn ramp(&self, o: usize, start: usize, len: usize, full_len: usize) -> f32 {
        let ramp = (self.overlap * self.scale) as f32;
        if ramp == 0.0 {
            return 1.0;
        }
        let mut w = 1.0f32;
        if start > 0 {
            w = w.min(((o - start) as f32 + 0.5) / ramp);
        }
        let end = start + len;
        if end < full_len {
            w = w.min(((end - o) as f32 - 0.5) / ramp);
        }
        w.clamp(1e-3, 1.0)
    }

    /// Adds the model output for `tile` (an upscaled copy of its `input` rect).
    pub fn add(&mut self, tile: &Tile, output: &Planar) {
        let s = self.scale;
        assert_eq!(
            (output.height, output.width),
            (tile.input.h * s, tile.input.w * s),
            "tile output size"
        );
        let (full_h, full_w) = (self.lr_h * s, self.lr_w * s);
        let (cy, cx, ch, cw) = (
            tile.core.y * s,
            tile.core.x * s,
            tile.core.h * s,
            tile.core.w * s,
        );
        let (oy, ox) = (cy - tile.input.y * s, cx - tile.input.x * s);
        for y in 0..ch {
            let wy = self.ramp(cy + y, cy, ch, full_h);
            for x in 0..cw {
                let wgt = wy * self.ramp(cx + x, cx, cw, full_w);
                let dst = (cy + y) * full_w + cx + x;
                let src = (oy + y) * output.width + ox + x;
                for c in 0..self.acc.channels {
                    self.acc.plane_mut(c)[dst] += wgt * output.plane(c)[src];
                }
                self.weight[dst] += wgt;
            }
        }
    }

    /// The blended image. Every pixel must have been covered by some tile.
    pub fn finish(mut self) -> Planar {
        let n = self.weight.len();
        for c in 0..self.acc.channels {
            let plane = &mut self.acc.data[c * n..(c + 1) * n];
            for (v, w) in plane.iter_mut().zip(&self.weight) {
                debug_assert!(*w > 0.0, "pixel not covered by any tile");
                *v /= w;
            }
        }
        self.acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_and_stay_inside() {
        for &(h, w, t, o, halo) in &[(37, 53, 16, 4, 6), (16, 16, 16, 4, 3), (5, 90, 32, 8, 10)] {
            let tiles = plan(h, w, t, o, halo);
            let mut covered = vec![false; h * w];
            for tile in &tiles {
                let (c, i) = (tile.core, tile.input);
                assert!(c.y + c.h <= h && c.x + c.w <= w);
                assert!(
                    i.y <= c.y && i.x <= c.x && i.y + i.h >= c.y + c.h && i.x + i.w >= c.x + c.w
                );
                assert!(i.y + i.h <= h && i.x + i.w <= w);
                for y in c.y..c.y + c.h {
                    for x in c.x..c.x + c.w {
                        covered[y * w + x] = true;
                    }
                }
            }
            assert!(covered.iter().all(|&c| c), "{h}x{w} tile {t}");
        }
    }

    #[test]
    fn a_pool_gets_at_least_its_tiles_as_strips_and_they_cover_the_image() {
        for &(h, w, t, o, n) in &[
            (256, 256, 256, 8, 2),
            (100, 40, 192, 8, 3),
            (64, 64, 16, 4, 2),
        ] {
            let tiles = plan_at_least(h, w, t, o, 20, n);
            assert!(
                tiles.len() >= n,
                "{h}x{w}: {} tiles for {n} workers",
                tiles.len()
            );
            let mut covered = vec![false; h * w];
            for tile in &tiles {
                let c = tile.core;
                for y in c.y..c.y + c.h {
                    for x in c.x..c.x + c.w {
                        covered[y * w + x] = true;
                    }
                }
            }
            assert!(covered.iter().all(|&c| c), "{h}x{w} for {n} workers");
        }
        // A small image: strips as tall as the image allows, whole width, halo on two sides.
        let strips = plan_at_least(256, 256, 256, 8, 20, 2);
        assert_eq!(strips.len(), 2);
        assert!(strips.iter().all(|t| t.core.w == 256 && t.input.h < 256));
        // Enough squares already: the plan does not change.
        assert_eq!(plan_at_least(64, 64, 16, 4, 3, 2), plan(64, 64, 16, 4, 3));
    }

    #[test]
    fn tile_size_follows_the_buffer_limit() {
        let (peak, halo) = (1728, 10);
        let mut last = 0;
        for limit_mb in [16u64, 64, 128, 256, 1024, 4096] {
            let limit = limit_mb << 20;
            let t = tile_for_buffer_limit(peak, halo, limit);
            assert!(t.is_multiple_of(8) && (16..=1024).contains(&t));
            assert!(t >= last, "more memory never gives smaller tiles");
            if t > 16 && t < 1024 {
                let side = (t + 2 * halo) as u64;
                assert!(side * side * peak <= limit / 2, "{limit_mb} MB -> tile {t}");
                let bigger = (t + 8 + 2 * halo) as u64;
                assert!(
                    bigger * bigger * peak > limit / 2,
                    "{limit_mb} MB: tile {t} not maximal"
                );
            }
            last = t;
        }
        assert_eq!(
            tile_for_buffer_limit(peak, halo, 1 << 10),
            16,
            "tiny limits keep a floor"
        );
    }

    #[test]
    fn blending_identical_tiles_reproduces_the_image() {
        // A fake "model": nearest-neighbour x2 of the input crop. Overlapping tiles agree, so the
        // blend must give back exactly the untiled result.
        let (h, w, s) = (23, 31, 2);
        let img = Planar::new(
            1,
            h,
            w,
            (0..h * w).map(|i| (i % 17) as f32 / 17.0).collect(),
        );
        let nearest = |p: &Planar| {
            let mut out = Planar::zeros(1, p.height * s, p.width * s);
            for y in 0..p.height * s {
                for x in 0..p.width * s {
                    out.data[y * p.width * s + x] = p.data[(y / s) * p.width + x / s];
                }
            }
            out
        };
        let whole = nearest(&img);
        let mut blender = Blender::new(1, h, w, s, 4);
        for tile in plan(h, w, 10, 4, 3) {
            let i = tile.input;
            blender.add(&tile, &nearest(&img.crop(i.y, i.x, i.h, i.w)));
        }
        let tiled = blender.finish();
        let max = tiled
            .data
            .iter()
            .zip(&whole.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-6, "max diff {max}");
    }
}
