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
