//! How hard a JPEG was compressed, read from its quantisation tables (no decoding).
//!
//! Encoders derived from libjpeg (most software, many cameras) scale the two tables of the JPEG
//! standard (Annex K) by a quality factor `q` in 1..=100: `scale = 5000 / q` below 50, `200 - 2q`
//! from 50, each entry `(std * scale + 50) / 100` clamped to 1..=255 (baseline). The estimate
//! is the `q` whose tables are closest to the file's (sum of absolute differences over the
//! tables the file has): exact for such encoders, the nearest equivalent for custom tables
//! (phones often use their own), which [`JpegQuality::standard_tables`] tells apart.
//!
//! The app and `websr upscale` use it to suggest the `photo` model, trained on compression
//! artefacts and noise, for low-quality JPEGs.

/// The estimate for one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JpegQuality {
    /// The libjpeg-equivalent quality, 1..=100.
    pub quality: u8,
    /// Whether the file's tables are exactly the scaled standard ones for `quality`.
    pub standard_tables: bool,
}

/// Below this quality the artefacts show when upscaled: the photo model is worth suggesting.
pub const SUGGEST_PHOTO_MODEL_BELOW: u8 = 75;

/// Annex K luminance table, natural (row-major) order.
const STD_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K chrominance table, natural order.
const STD_CHROMA: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// The natural-order index of the `k`-th value in a DQT segment (zig-zag order).
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The standard table scaled to `quality` as libjpeg does (baseline: entries up to 255).
fn scaled(table: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    table.map(|v| ((u32::from(v) * scale + 50) / 100).clamp(1, 255) as u16)
}

/// The quantisation tables of a JPEG (table id -> 64 values in natural order), read up to the
/// first scan. `None` if `bytes` is not a JPEG or its header is cut short.
pub fn quantisation_tables(bytes: &[u8]) -> Option<Vec<(u8, [u16; 64])>> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut tables = Vec::new();
    let mut at = 2;
    loop {
        // Markers may be padded with 0xFF fill bytes.
        while *bytes.get(at)? == 0xFF && *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        // Start of scan or end of image: the tables come before.
        if marker == 0xDA || marker == 0xD9 {
            return (!tables.is_empty()).then_some(tables);
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            at += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let segment = bytes.get(at + 4..at + 2 + len.max(2))?;
        if marker == 0xDB {
            let mut s = segment;
            while let Some((&pq_tq, rest)) = s.split_first() {
                let (precision16, id) = (pq_tq >> 4 != 0, pq_tq & 0x0F);
                let width = if precision16 { 2 } else { 1 };
                let raw = rest.get(..64 * width)?;
                let mut table = [0u16; 64];
                for (k, &natural) in ZIGZAG.iter().enumerate() {
                    table[natural] = if precision16 {
                        u16::from_be_bytes([raw[2 * k], raw[2 * k + 1]])
                    } else {
                        u16::from(raw[k])
                    };
                }
                tables.retain(|(t, _)| *t != id);
                tables.push((id, table));
                s = &rest[64 * width..];
            }
        }
        at += 2 + len;
    }
}

/// Estimates the quality a JPEG was saved at; `None` for anything that is not a JPEG with
/// readable quantisation tables.
pub fn estimate(bytes: &[u8]) -> Option<JpegQuality> {
    let tables = quantisation_tables(bytes)?;
    let luma = tables.iter().find(|(id, _)| *id == 0).map(|(_, t)| t)?;
    let chroma = tables.iter().find(|(id, _)| *id == 1).map(|(_, t)| t);
    let distance = |q: u8| -> u32 {
        let mut d: u32 = scaled(&STD_LUMA, q)
            .iter()
            .zip(luma)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .sum();
        if let Some(c) = chroma {
            d += scaled(&STD_CHROMA, q)
                .iter()
                .zip(c)
                .map(|(a, b)| u32::from(a.abs_diff(*b)))
                .sum::<u32>();
        }
        d
    };
    // The highest quality among the closest: tables saturate at 1 near 100 and at 255 near 1.
    let (best, d) = (1..=100u8)
        .map(|q| (q, distance(q)))
        .min_by_key(|&(q, d)| (d, std::cmp::Reverse(q)))
        .expect("a non-empty range");
    Some(JpegQuality {
        quality: best,
        standard_tables: d == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::RgbImage;

    fn jpeg(quality: u8) -> Vec<u8> {
        let img = RgbImage::from_fn(48, 40, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn the_quality_of_standard_encoders_is_read_back() {
        for q in [10, 30, 42, 50, 75, 90, 95] {
            let est = estimate(&jpeg(q)).expect("a JPEG");
            assert!(
                est.quality.abs_diff(q) <= 1,
                "saved at {q}, estimated {est:?}"
            );
        }
        // Low qualities are exact: every entry moves with q.
        assert_eq!(estimate(&jpeg(30)).unwrap().quality, 30);
    }

    #[test]
    fn scaled_tables_match_libjpeg_at_50_and_clamp() {
        assert_eq!(scaled(&STD_LUMA, 50), STD_LUMA);
        assert!(scaled(&STD_LUMA, 100).iter().all(|&v| v == 1));
        assert!(scaled(&STD_CHROMA, 1).iter().all(|&v| v == 255));
    }

    #[test]
    fn sixteen_bit_and_custom_tables_are_read() {
        // SOI, DQT with one 16-bit luma table (the q = 20 values), SOS.
        let table = scaled(&STD_LUMA, 20);
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, (2 + 1 + 128) as u8, 0x10];
        for natural in ZIGZAG {
            bytes.extend_from_slice(&table[natural].to_be_bytes());
        }
        bytes.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
        assert_eq!(
            estimate(&bytes),
            Some(JpegQuality {
                quality: 20,
                standard_tables: true
            })
        );
        // A custom table: the nearest quality, flagged as not standard.
        let mut custom = bytes.clone();
        custom[8] ^= 0x01;
        assert!(!estimate(&custom).unwrap().standard_tables);
    }

    #[test]
    fn other_files_and_cut_headers_give_none() {
        assert_eq!(estimate(b"\x89PNG\r\n\x1a\nrest"), None);
        assert_eq!(estimate(&[]), None);
        let full = jpeg(60);
        for cut in [3, 10, 30, 80] {
            assert_eq!(estimate(&full[..cut]), None, "cut at {cut}");
        }
    }
}
