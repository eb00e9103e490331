//! Decoding and encoding: formats, grayscale, alpha, corrupt and oversized inputs.

mod common;

use common::{max_abs_diff, synthetic};
use std::io::Cursor;
use websr::image::{decode, encode_png, Picture, Planar};
use websr::WebSrError;

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

#[test]
fn png_round_trip_keeps_pixels_and_alpha() {
    let rgb = synthetic(9, 11, 1);
    let alpha = Planar::new(1, 9, 11, (0..99).map(|i| (i % 5) as f32 / 4.0).collect());
    let mut pic = Picture {
        rgb,
        alpha: Some(alpha),
    };
    pic.rgb.quantize_u8();
    pic.alpha.as_mut().unwrap().quantize_u8();
    let bytes = encode_png(&pic).unwrap();
    let back = decode(&bytes, 1 << 20).unwrap();
    assert!(max_abs_diff(&back.rgb.data, &pic.rgb.data) < 1e-6);
    let (a, b) = (back.alpha.unwrap(), pic.alpha.unwrap());
    assert!(max_abs_diff(&a.data, &b.data) < 1e-6);
}

#[test]
fn grayscale_becomes_rgb_with_equal_channels() {
    let gray = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 40 + y * 10) as u8]));
    for format in [image::ImageFormat::Png, image::ImageFormat::Bmp] {
        let pic = decode(&encode(gray.clone().into(), format), 1 << 20).unwrap();
        assert_eq!(pic.rgb.channels, 3);
        assert!(pic.alpha.is_none());
        assert_eq!(pic.rgb.plane(0), pic.rgb.plane(1));
        assert_eq!(pic.rgb.plane(1), pic.rgb.plane(2));
        assert!((pic.rgb.plane(0)[6] - 50.0 / 255.0).abs() < 1e-6); // x=1, y=1
    }
}

#[test]
fn jpeg_and_webp_decode() {
    let img = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 128]));
    for format in [image::ImageFormat::Jpeg, image::ImageFormat::WebP] {
        let pic = decode(&encode(img.clone().into(), format), 1 << 20).unwrap();
        assert_eq!((pic.width(), pic.height()), (16, 8), "{format:?}");
    }
}

#[test]
fn corrupt_and_non_image_bytes_are_clear_errors() {
    let err = decode(b"hello, I am a text file", 1 << 20).unwrap_err();
    assert!(matches!(err, WebSrError::Decode(_)), "{err}");
    let png = encode(image::RgbImage::new(32, 32).into(), image::ImageFormat::Png);
    let err = decode(&png[..png.len() / 2], 1 << 20).unwrap_err();
    assert!(matches!(err, WebSrError::Decode(_)), "{err}");
}

#[test]
fn images_above_the_pixel_limit_are_refused_before_decoding() {
    let png = encode(
        image::RgbImage::new(300, 200).into(),
        image::ImageFormat::Png,
    );
    let err = decode(&png, 300 * 200 - 1).unwrap_err();
    assert!(
        matches!(
            err,
            WebSrError::TooLarge {
                width: 300,
                height: 200,
                ..
            }
        ),
        "{err}"
    );
    assert!(decode(&png, 300 * 200).is_ok());
}

/// A JPEG with an EXIF APP1 segment holding only an Orientation tag, spliced in after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0"); // little-endian TIFF header
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD right after the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // 32x16: bright left half, dark right half. Orientation 6 = rotate 90 degrees clockwise, so
    // the result is 16x32 with the bright half on top.
    let img = image::RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            image::Rgb([230, 230, 230])
        } else {
            image::Rgb([20, 20, 20])
        }
    });
    let jpeg = encode(
        image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Jpeg,
    );
    let plain = decode(&jpeg, 1 << 20).unwrap();
    assert_eq!((plain.width(), plain.height()), (32, 16));
    let rotated = decode(&with_exif_orientation(&jpeg, 6), 1 << 20).unwrap();
    assert_eq!((rotated.width(), rotated.height()), (16, 32));
    let red = rotated.rgb.plane(0);
    let (top, bottom) = (red[4 * 16 + 8], red[28 * 16 + 8]);
    assert!(top > 0.7 && bottom < 0.3, "top {top}, bottom {bottom}");
}
