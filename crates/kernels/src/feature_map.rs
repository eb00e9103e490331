//! Feature maps as the convolution kernel reads and writes them.

/// `channels` features on a `height` x `width` grid, stored channel-last (all channels of a
/// pixel side by side) with a one-pixel border of zeros around the grid: the "same" padding of a
/// 3x3 convolution, stored once, so the kernel reads every neighbour without a bounds test.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMap {
    height: usize,
    width: usize,
    channels: usize,
    /// `(height + 2) * (width + 2) * channels` values, border included.
    data: Vec<f32>,
}

impl FeatureMap {
    /// All zeros.
    pub fn zeros(height: usize, width: usize, channels: usize) -> FeatureMap {
        FeatureMap {
            height,
            width,
            channels,
            data: vec![0.0; (height + 2) * (width + 2) * channels],
        }
    }

    /// From planar (channel-first, `[channels][height][width]`) values.
    pub fn from_planar(channels: usize, height: usize, width: usize, planar: &[f32]) -> Self {
        assert_eq!(
            planar.len(),
            channels * height * width,
            "planar data must hold channels x height x width values"
        );
        let mut map = FeatureMap::zeros(height, width, channels);
        // Row by row: one grid row of every channel (read) and one map row (written) stay in
        // cache together; channel-outer order walked the whole map once per channel.
        let plane = height * width;
        for y in 0..height {
            let start = map.index(y, 0);
            let row = &mut map.data[start..start + width * channels];
            for c in 0..channels {
                let src = &planar[c * plane + y * width..][..width];
                for (pixel, &v) in row.chunks_exact_mut(channels).zip(src) {
                    pixel[c] = v;
                }
            }
        }
        map
    }

    /// The first `channels` channels as planar values (`[channels][height][width]`).
    pub fn to_planar(&self, channels: usize) -> Vec<f32> {
        assert!(
            channels <= self.channels,
            "the map has {} channels",
            self.channels
        );
        let (height, width) = (self.height, self.width);
        let plane = height * width;
        let mut out = vec![0.0; channels * plane];
        // Row by row, as in `from_planar`.
        for y in 0..height {
            let start = self.index(y, 0);
            let row = &self.data[start..start + width * self.channels];
            for c in 0..channels {
                let dst = &mut out[c * plane + y * width..][..width];
                for (v, pixel) in dst.iter_mut().zip(row.chunks_exact(self.channels)) {
                    *v = pixel[c];
                }
            }
        }
        out
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Values from one padded row to the next.
    pub(crate) fn row_stride(&self) -> usize {
        (self.width + 2) * self.channels
    }

    /// Index of channel 0 of grid pixel `(y, x)` (border excluded from the coordinates).
    pub(crate) fn index(&self, y: usize, x: usize) -> usize {
        (y + 1) * self.row_stride() + (x + 1) * self.channels
    }

    pub(crate) fn data(&self) -> &[f32] {
        &self.data
    }

    pub(crate) fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}
