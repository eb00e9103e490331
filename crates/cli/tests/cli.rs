//! The `websr` binary end to end: shipped models, upscaling files and folders, clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn websr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_websr"))
        .args(args)
        .output()
        .expect("websr runs")
}

/// Runs `websr upscale INPUT -o OUTPUT EXTRA...` and fails the test with its stderr if it fails.
fn upscale_ok(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec![
        "upscale",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = websr(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("websr-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `websr train` of a tiny WaveLR x2 (width 8, one body layer) for 2 steps into `run`, with
/// `extra` flags (its data).
fn tiny_wavelr_args<'a>(run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--arch",
        "wavelr",
        "--scale",
        "2",
        "--features",
        "8",
        "--layers",
        "1",
        "--steps",
        "2",
        "--batch",
        "2",
        "--patch",
        "16",
        "--out",
    ];
    args.push(run.to_str().unwrap());
    args.extend_from_slice(extra);
    args
}

/// An RGBA test image with a soft alpha ramp.
fn write_rgba(path: &Path, w: u32, h: u32) {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        let edge = if (x / 5 + y / 7) % 2 == 0 { 200 } else { 60 };
        image::Rgba([edge, (x * 8) as u8, (y * 8) as u8, (x * 255 / w) as u8])
    });
    img.save(path).unwrap();
}

#[test]
fn models_lists_the_shipped_models() {
    let out = websr(&["models"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wavelr-x4"), "{text}");
}

#[test]
fn upscale_without_a_model_uses_the_default_of_the_scale() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let manifest = websr::zoo::Manifest::load(&models).unwrap();
    let default_x2 = &manifest.default_for(2).unwrap().name;
    let dir = tempdir("default");
    let input = dir.join("in.png");
    write_rgba(&input, 16, 12);
    let (implicit, named) = (dir.join("implicit.png"), dir.join("named.png"));
    upscale_ok(&input, &implicit, &["--scale", "2"]);
    upscale_ok(&input, &named, &["--model", default_x2]);
    let img = image::open(&implicit).unwrap();
    assert_eq!((img.width(), img.height()), (32, 24));
    assert_eq!(
        std::fs::read(&implicit).unwrap(),
        std::fs::read(&named).unwrap()
    );

    // A models folder whose manifest names no default: a clear error, no output.
    let bare = dir.join("models");
    std::fs::create_dir_all(&bare).unwrap();
    let mut stripped = manifest.clone();
    stripped.models.iter_mut().for_each(|m| m.default = false);
    stripped.save(&bare).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_websr"))
        .args(["upscale", input.to_str().unwrap(), "-o"])
        .arg(dir.join("none.png"))
        .args(["--scale", "2"])
        .env("WEBSR_MODELS", &bare)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no default model for x2"),
        "{err}"
    );
    assert!(!dir.join("none.png").exists());
}

#[test]
fn upscale_a_file_keeps_alpha_and_scales_by_four() {
    let dir = tempdir("file");
    let (input, output) = (dir.join("in.png"), dir.join("out.png"));
    write_rgba(&input, 30, 20);
    upscale_ok(&input, &output, &["--model", "wavelr-x4", "--tile", "12"]);
    let img = image::open(&output).unwrap();
    assert_eq!((img.width(), img.height()), (120, 80));
    assert!(img.color().has_alpha(), "alpha was dropped");
    let rgba = img.to_rgba8();
    // The alpha ramp goes left (transparent) to right (opaque).
    assert!(rgba.get_pixel(2, 40)[3] < 40 && rgba.get_pixel(117, 40)[3] > 200);
}

#[test]
fn upscale_a_folder_writes_one_png_per_image() {
    let dir = tempdir("folder");
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    write_rgba(&input.join("a.png"), 16, 16);
    write_rgba(&input.join("b.bmp"), 10, 12);
    upscale_ok(&input, &output, &["--model", "bicubic", "--scale", "2"]);
    assert_eq!(image::open(output.join("a.png")).unwrap().width(), 32);
    assert_eq!(image::open(output.join("b.png")).unwrap().height(), 24);
}

#[test]
fn bad_inputs_fail_with_a_message() {
    let dir = tempdir("bad");
    let text = dir.join("notes.png");
    std::fs::write(&text, "this is not an image").unwrap();
    let out = websr(&[
        "upscale",
        text.to_str().unwrap(),
        "-o",
        dir.join("o.png").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("decode"), "{err}");
    assert!(!dir.join("o.png").exists(), "a failed run wrote output");

    let out = websr(&[
        "upscale",
        text.to_str().unwrap(),
        "-o",
        "x.png",
        "--model",
        "no-such-model",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shipped model"));

    let out = websr(&[
        "upscale",
        text.to_str().unwrap(),
        "-o",
        "x.png",
        "--model",
        "wavelr-x4",
        "--scale",
        "2",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("x4, not x2"));
}

#[test]
fn prune_writes_a_subset_that_train_accepts() {
    let dir = tempdir("prune");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 2x2 + 3x2 = 10 sub-images of 32x32.
    write_rgba(&data.join("a.png"), 64, 64);
    write_rgba(&data.join("b.png"), 96, 64);
    let subset = dir.join("subset.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = websr(&[
        "prune",
        "--scorer",
        "wavelr-x2",
        "--data",
        &s(&data),
        "--keep",
        "0.5",
        "--drop-hardest",
        "0.2",
        "--sub-image",
        "32",
        "--stride",
        "32",
        "-o",
        &s(&subset),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&subset).unwrap()).unwrap();
    assert_eq!(m["scored"], 10);
    let samples = m["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    // The 2 hardest (ranks 0 and 1) are dropped; ranks 2..7 are kept.
    let ranks: Vec<u64> = samples
        .iter()
        .map(|x| x["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, vec![2, 3, 4, 5, 6]);
    let run = dir.join("run");
    let train = |subset: &Path| websr(&tiny_wavelr_args(&run, &["--subset", &s(subset)]));
    let out = train(&subset);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("subset_sha256"), "{config}");
    // A subset whose image is gone is a clear error.
    std::fs::remove_file(data.join("b.png")).unwrap();
    let out = train(&subset);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing") && err.contains("b.png"), "{err}");
}

#[test]
fn fl_client_names_an_unreachable_server_and_bad_arguments() {
    let dir = tempdir("fl-client");
    let photo = dir.join("p.png");
    write_rgba(&photo, 64, 64);
    // Port 9 (discard) on loopback: nothing listens there.
    let out = websr(&[
        "fl-client",
        "--server",
        "http://127.0.0.1:9",
        "--data",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("127.0.0.1:9") && err.contains("no answer"),
        "{err}"
    );

    let out = websr(&[
        "fl-client",
        "--data",
        dir.to_str().unwrap(),
        "--degradation",
        "sepia",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sepia"), "{err}");

    let out = websr(&["fl-client", "--data", dir.join("missing").to_str().unwrap()]);
    assert!(!out.status.success());

    // Plain http to another machine is refused before any connection (token in clear).
    let out = websr(&[
        "fl-client",
        "--server",
        "http://fl.example.org",
        "--data",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("https://") && err.contains("in clear"),
        "{err}"
    );
}

#[test]
fn fl_sim_refuses_impossible_settings_before_training() {
    let out = websr(&["fl-sim", "--clients", "2", "--per-round", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--per-round"),
        "{err}"
    );
    let out = websr(&["fl-sim", "--strategies", "fedavg,fedmagic"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fedmagic"), "{err}");
    let out = websr(&["fl-sim", "--data", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent"),
        "{err}"
    );
}

/// `websr train` of a tiny DiWa x4 (U-Net width 8) on `data` into `run`, plus `extra`.
fn tiny_diwa_args<'a>(
    data: &'a Path,
    run: &'a Path,
    steps: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--model",
        "diwa",
        "--unet-width",
        "8",
        "--scale",
        "4",
        "--steps",
        steps,
        "--batch",
        "2",
        "--patch",
        "32",
        "--holdout",
        "0",
    ];
    args.extend([
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    args
}

#[test]
fn diffusion_trains_from_the_cli_and_its_samples_are_fixed_by_the_seed() {
    let dir = tempdir("diffusion");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_rgba(&data.join("a.png"), 48, 40);
    let run = dir.join("run");
    let out = websr(&tiny_diwa_args(
        &data,
        &run,
        "2",
        &["--yoda", "--predictor-l1"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weights = run.join("last.safetensors");
    let input = dir.join("in.png");
    write_rgba(&input, 20, 14);
    let sample = |seed: &str, name: &str| {
        let output = dir.join(name);
        let model = weights.to_str().unwrap();
        upscale_ok(
            &input,
            &output,
            &["--model", model, "--steps", "3", "--seed", seed, "--yoda"],
        );
        std::fs::read(output).unwrap()
    };
    let (a, b, c) = (
        sample("5", "a.png"),
        sample("5", "b.png"),
        sample("6", "c.png"),
    );
    assert_eq!(a, b, "the same seed and steps gave different images");
    assert_ne!(a, c, "the seed changed nothing");
    let img = image::load_from_memory(&a).unwrap();
    assert_eq!((img.width(), img.height()), (80, 56));
    assert!(img.color().has_alpha(), "alpha was dropped");

    // Sampling flags belong to diffusion models, and a one-pass file is not one.
    let input = input.to_str().unwrap();
    let refused = websr(&[
        "upscale",
        input,
        "-o",
        "/tmp/x.png",
        "--model",
        "wavelr-x4",
        "--steps",
        "3",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("diffusion models"));
    let wrong = websr(&[
        "train",
        "--model",
        "sr4",
        "--out",
        "/tmp/websr-never",
        "--steps",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unknown diffusion model"));
}

/// `websr reencode` in a models folder holding only `name` (copied from models/); the folder.
fn models_folder_with(dir: &Path, name: &str) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let mut manifest = websr::zoo::Manifest::load(&shipped).unwrap();
    manifest.models.retain(|m| m.name == name);
    manifest.save(&models).unwrap();
    for file in [format!("{name}.safetensors"), format!("{name}.md")] {
        std::fs::copy(shipped.join(&file), models.join(&file)).unwrap();
    }
    models
}

fn reencode(models: &Path, data: &Path, extra: &[&str]) -> String {
    let out = websr(
        &[
            &["reencode", "--models-dir", models.to_str().unwrap()],
            &["--data", data.to_str().unwrap()][..],
            extra,
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn reencode_rewrites_a_model_within_the_score_tolerance_only() {
    let dir = tempdir("reencode");
    let models = models_folder_with(&dir, "wavelr-x4");
    // Synthetic "Set5" and "Set14": the scores are re-measured on whatever the folders hold.
    let data = dir.join("data");
    for (set, size) in [("set5", 40), ("set14", 48)] {
        std::fs::create_dir_all(data.join(set)).unwrap();
        let img = image::RgbImage::from_fn(size, size, |x, y| {
            image::Rgb([
                (x * 6) as u8,
                (y * 5) as u8,
                if (x / 4 + y / 3) % 2 == 0 { 200 } else { 40 },
            ])
        });
        img.save(data.join(set).join("a.png")).unwrap();
    }
    let file = models.join("wavelr-x4.safetensors");
    let is_f16 = |bytes: &[u8]| websr::weights::to_f16_bytes(bytes).unwrap() == bytes;
    let entry = || websr::zoo::Manifest::load(&models).unwrap().models[0].clone();

    // To f32 (the manifest's real-Set5 scores are far from these, so the tolerance is lifted)...
    reencode(&models, &data, &["--wire", "f32", "--max-delta", "100"]);
    let f32_bytes = std::fs::read(&file).unwrap();
    assert!(!is_f16(&f32_bytes));
    let card = std::fs::read_to_string(models.join("wavelr-x4.md")).unwrap();
    assert!(
        card.contains(&entry().sha256) && card.contains("- Weights: float32."),
        "{card}"
    );

    // ...and back: within the default 0.01 dB of the f32 scores, so it is written.
    let text = reencode(&models, &data, &[]);
    let f16_bytes = std::fs::read(&file).unwrap();
    assert!(is_f16(&f16_bytes), "{text}");
    assert!(f16_bytes.len() * 10 < f32_bytes.len() * 6);
    let e = entry();
    assert_eq!(e.sha256, websr::weights::sha256_hex(&f16_bytes));
    assert_eq!(e.bytes, f16_bytes.len() as u64);
    let card = std::fs::read_to_string(models.join("wavelr-x4.md")).unwrap();
    assert!(
        card.contains(&e.sha256) && card.contains("- Weights: float16"),
        "{card}"
    );
    assert_eq!(card.matches("- Weights: ").count(), 1, "{card}");
    assert!(reencode(&models, &data, &[]).contains("already F16"));

    // A manifest score the new file misses by more than the tolerance: left as it was.
    let mut manifest = websr::zoo::Manifest::load(&models).unwrap();
    manifest.models[0].set14.as_mut().unwrap()[0] += 0.5;
    manifest.save(&models).unwrap();
    let text = reencode(&models, &data, &["--wire", "f32"]);
    assert!(text.contains("kept as it was"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), f16_bytes);
}

#[test]
fn diwa_on_a_frozen_predictor_trains_resumes_with_its_scale_and_samples_at_a_strength() {
    let dir = tempdir("frozen-diwa");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_rgba(&data.join("a.png"), 48, 40);
    let run = dir.join("run");
    let predictor =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/wavelr-x4.safetensors");
    let train = |steps: &str, resume: bool| {
        let mut extra = vec!["--predictor", predictor.to_str().unwrap()];
        if resume {
            extra.push("--resume");
        }
        websr(&tiny_diwa_args(&data, &run, steps, &extra))
    };
    let first = train("1", false);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(
        err.contains("residual RMS"),
        "a new run measures its scale: {err}"
    );
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(
        config.contains("one_pass") && config.contains("residual_scale"),
        "{config}"
    );
    // The resumed run takes its scale from the checkpoint instead of measuring it again.
    let second = train("2", true);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        !err.contains("residual RMS") && err.contains("starting at step 1"),
        "{err}"
    );

    let input = dir.join("in.png");
    write_rgba(&input, 20, 14);
    let weights = run.join("last.safetensors");
    let model = weights.to_str().unwrap();
    let sample = |strength: &str, name: &str| {
        let output = dir.join(name);
        upscale_ok(
            &input,
            &output,
            &["--model", model, "--steps", "2", "--strength", strength],
        );
        std::fs::read(output).unwrap()
    };
    assert_ne!(
        sample("0.2", "a.png"),
        sample("1", "b.png"),
        "the strength changed nothing"
    );
    let refused = websr(&[
        "upscale",
        input.to_str().unwrap(),
        "-o",
        dir.join("c.png").to_str().unwrap(),
        "--model",
        model,
        "--strength",
        "1.5",
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("strength"),
        "{err}"
    );
}

#[test]
fn distill_writes_its_patches_and_never_overwrites_a_finished_set() {
    let dir = tempdir("distill");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_rgba(&data.join("a.png"), 64, 48);
    write_rgba(&data.join("b.png"), 40, 72);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let distill = |out: &Path, patch: &str, extra: &[&str]| {
        let mut args = vec![
            "distill".to_string(),
            "--data".into(),
            s(&data),
            "--holdout".into(),
            "0".into(),
            "--images".into(),
            "3".into(),
            "--batch".into(),
            "2".into(),
            "--real-batch".into(),
            "2".into(),
            "--iterations".into(),
            "2".into(),
            "--patch".into(),
            patch.into(),
            "--out".into(),
            s(out),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        websr(&args)
    };
    let out = dir.join("set");
    let first = distill(&out, "32", &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for sub in ["synthetic", "real"] {
        for i in 0..3 {
            let img = image::open(out.join(format!("{sub}/{i:03}.png"))).unwrap();
            assert_eq!((img.width(), img.height()), (32, 32), "{sub}/{i}");
        }
        assert!(!out.join(format!("{sub}/003.png")).exists());
    }
    let overview = image::open(out.join("overview.png")).unwrap();
    assert_eq!(
        (overview.width(), overview.height()),
        (3 * 32 + 2 * 4, 2 * 32 + 4)
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("distill.json")).unwrap()).unwrap();
    assert_eq!(record["format"], "websr-ld3m");
    assert_eq!(
        record["config"]["steps"], 4,
        "the generator's own default steps"
    );
    assert_eq!(record["loss_curve"].as_array().unwrap().len(), 2);
    // The record names the generator file that ran, by its bytes' SHA-256.
    let shipped = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/diwa-wavelr-x4.safetensors"),
    )
    .unwrap();
    assert_eq!(
        record["generator_sha256"],
        websr::weights::sha256_hex(&shipped)
    );

    // A finished set is never overwritten.
    let before = std::fs::read(out.join("synthetic/000.png")).unwrap();
    let again = distill(&out, "32", &["--seed", "5"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read(out.join("synthetic/000.png")).unwrap(),
        before
    );

    // Settings that cannot work name their reason and write nothing.
    for (patch, extra, reason) in [
        (
            "32",
            &["--generator", "wavelr-x4"][..],
            "not a diffusion model",
        ),
        ("36", &[][..], "multiple of 32"),
        ("32", &["--lr", "0"][..], "learning rate"),
    ] {
        let target = dir.join("refused");
        let out = distill(&target, patch, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(reason),
            "{extra:?}: {err}"
        );
        assert!(!target.join("distill.json").exists());
    }
}

/// `websr ship` refuses a run short of its planned steps unless asked (`--unfinished` ships the
/// best held-out checkpoint, so it needs a validation to have happened) and refuses
/// `--unfinished` on a finished run. Every refusal comes before anything is measured or written.
#[test]
fn ship_refuses_unfinished_runs_unless_asked() {
    let dir = tempdir("ship");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_rgba(&data.join("a.png"), 48, 40);
    let run = dir.join("run");
    let models = dir.join("models");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let trained = websr(&tiny_wavelr_args(
        &run,
        &["--holdout", "0", "--data", &s(&data)],
    ));
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let ship = |extra: &[&str]| {
        let (run, models) = (s(&run), s(&models));
        let mut args = vec![
            "ship",
            "--run",
            &run,
            "--name",
            "tiny-x2",
            "--description",
            "tiny",
            "--command",
            "websr train ...",
            "--models-dir",
            &models,
        ];
        args.extend_from_slice(extra);
        let out = websr(&args);
        assert!(!out.status.success(), "shipped with {extra:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = ship(&["--unfinished"]);
    assert!(err.contains("finished all 2 steps"), "{err}");
    // Plan more steps than were taken: now the run is unfinished.
    let config_path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["steps"] = 10.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = ship(&[]);
    assert!(
        err.contains("step 2 of 10") && err.contains("--unfinished"),
        "{err}"
    );
    let err = ship(&["--unfinished"]);
    assert!(err.contains("no held-out validation yet"), "{err}");
    assert!(
        !models.exists(),
        "a refused ship wrote {}",
        models.display()
    );
}
