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
        for (c, plane) in planar.chunks_exact(height * width.max(1)).enumerate() {
            for (y, row) in plane.chunks_exact(width.max(1)).enumerate() {
                for (x, &v) in row.iter().enumerate() {
                    let i = map.index(y, x) + c;
                    map.data[i] = v;
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
        let mut out = Vec::with_capacity(channels * self.height * self.width);
        for c in 0..channels {
            for y in 0..self.height {
                out.extend((0..self.width).map(|x| self.data[self.index(y, x) + c]));
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
