//! `websr reencode`: rewrites shipped models in another wire format (float16 by default) without
//! retraining. Each rewritten file is scored on Set5/Set14 as `websr ship` scores it; the file,
//! its manifest entry (SHA-256, size, scores) and its card are replaced only when both PSNRs stay
//! within `--max-delta` dB of the manifest's, otherwise the model is left as it was.

use crate::ship::{card_options, score_cell, score_sets, Wire};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use websr::burn::tensor::Device;
use websr::device::Backend;
use websr::eval::Report;
use websr::weights::sha256_hex;
use websr::zoo::{read_verified, Manifest, ModelEntry};
use websr::Model;

#[derive(clap::Args)]
pub struct ReencodeArgs {
    /// Shipped model names; none: every model of the manifest.
    names: Vec<String>,
    #[arg(long, value_enum, default_value = "f16")]
    wire: Wire,
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Diffusion models: the DDIM steps (eta 0, seed 0) their cards' scores are measured with.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// The largest Set5 or Set14 PSNR change (dB) a rewritten model may show.
    #[arg(long, default_value_t = 0.01)]
    max_delta: f64,
}

pub fn run(args: &ReencodeArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let mut manifest = Manifest::load(&args.models_dir)?;
    let names = if args.names.is_empty() {
        manifest.models.iter().map(|m| m.name.clone()).collect()
    } else {
        args.names.clone()
    };
    for name in &names {
        let entry = manifest
            .find(name)
            .with_context(|| format!("no shipped model '{name}'"))?
            .clone();
        if let Some(updated) = reencode(args, &entry, &device)? {
            *manifest
                .models
                .iter_mut()
                .find(|m| &m.name == name)
                .unwrap() = updated;
            // Saved after each model, so that an interrupted run leaves file and manifest agreeing.
            manifest.save(&args.models_dir)?;
        }
    }
    Ok(())
}

/// Rewrites one model; its new manifest entry, or `None` when it is left as it was.
fn reencode(
    args: &ReencodeArgs,
    entry: &ModelEntry,
    device: &Device,
) -> Result<Option<ModelEntry>> {
    let name = &entry.name;
    let old = read_verified(&args.models_dir, entry)?;
    let new = args.wire.encode(&old)?;
    if new == old {
        println!("{name}: already {:?}", args.wire);
        return Ok(None);
    }
    let model = Model::from_bytes(&new, device)?;
    let [set5, set14] = score_sets(
        &args.data,
        &model,
        &card_options(&model, args.steps),
        device,
    )?;
    let mut worst = 0.0f64;
    for (set, report, shipped) in [("Set5", &set5, entry.set5), ("Set14", &set14, entry.set14)] {
        let [psnr, ssim] = shipped.with_context(|| format!("{name} has no {set} score"))?;
        let delta = report.mean.psnr_y - psnr;
        worst = worst.max(delta.abs());
        println!(
            "{name} {set}: {psnr:.4} dB / {ssim:.5} -> {:.4} dB / {:.5} ({delta:+.4} dB)",
            report.mean.psnr_y, report.mean.ssim_y
        );
    }
    if worst > args.max_delta {
        println!(
            "{name}: kept as it was (PSNR moved {worst:.4} dB > {})",
            args.max_delta
        );
        return Ok(None);
    }
    let card_path = args.models_dir.join(format!("{name}.md"));
    let card = std::fs::read_to_string(&card_path)
        .with_context(|| format!("reading {}", card_path.display()))?;
    let card = patch_card(&card, &sha256_hex(&new), args.wire, [&set5, &set14])
        .with_context(|| format!("{}", card_path.display()))?;
    std::fs::write(args.models_dir.join(&entry.file), &new)?;
    std::fs::write(&card_path, card)?;
    println!("{name}: {} -> {} bytes", old.len(), new.len());
    Ok(Some(ModelEntry {
        sha256: sha256_hex(&new),
        bytes: new.len() as u64,
        set5: Some([set5.mean.psnr_y, set5.mean.ssim_y]),
        set14: Some([set14.mean.psnr_y, set14.mean.ssim_y]),
        ..entry.clone()
    }))
}

/// The card (as `websr ship` writes it) with the new SHA-256, format line and measured cells;
/// everything else, the training history included, is kept.
fn patch_card(card: &str, sha256: &str, wire: Wire, [set5, set14]: [&Report; 2]) -> Result<String> {
    let mut out = Vec::new();
    let (mut sha_seen, mut rows) = (false, 0);
    for line in card.lines() {
        if line.starts_with("- Weights: ") {
            continue;
        }
        if line.starts_with("- SHA-256: ") {
            out.push(format!("- SHA-256: `{sha256}`"));
            out.push(format!("- {}", wire.card_line()));
            sha_seen = true;
            continue;
        }
        let report = match line {
            l if l.starts_with("| Set5 |") => set5,
            l if l.starts_with("| Set14 |") => set14,
            l => {
                out.push(l.to_string());
                continue;
            }
        };
        // `| set | bicubic | ours |`: only the last cell is this model's.
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() != 5 {
            bail!("unexpected score row: {line}");
        }
        out.push(format!(
            "|{}|{}| {} |",
            cells[1],
            cells[2],
            score_cell(report)
        ));
        rows += 1;
    }
    if !sha_seen || rows != 2 {
        bail!("not a card as websr ship writes it (SHA-256 line and Set5/Set14 rows)");
    }
    Ok(out.join("\n") + "\n")
}
