//! `websr fl-client`: a native federated participant. It speaks the aggregator's protocol
//! (see `websr-aggregator`'s crate docs): join, wait to be selected, download the global model,
//! train on its own images with blind degradations, send only the clipped delta, wait for the
//! next version, repeat. The browser's training page does the same with `fetch`.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;
use websr::degrade::DegradationSampler;
use websr::device::Backend;
use websr::federated::round::{run_round_with_delta_async, ClientOptions};
use websr::federated::ClientData;
use websr::train::data::TrainingSet;
use websr_federated::protocol::{Accepted, ClientFloor, Joined, RoundConfig};

/// Arguments of `websr fl-client`.
#[derive(Args)]
pub struct FlClientArgs {
    /// The aggregator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub server: String,
    /// Folder of this participant's images (they never leave this machine).
    #[arg(long)]
    pub data: PathBuf,
    /// How LR inputs are made: clean, blur, noise, jpeg, or mixed (each of blur/noise/JPEG with
    /// probability 1/2).
    #[arg(long, default_value = "mixed")]
    pub degradation: String,
    /// Rounds to contribute to before leaving (training may also finish earlier).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// HR patch side of the training pairs.
    #[arg(long, default_value_t = 64)]
    pub patch: usize,
    /// The most local steps per round this machine will run.
    #[arg(long, default_value_t = 200)]
    pub max_steps: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Give up when the server has not moved on for this long (seconds).
    #[arg(long, default_value_t = 600.0)]
    pub timeout_secs: f64,
    /// Trust this CA certificate (PEM) for an https server instead of the bundled web roots:
    /// an aggregator behind a TLS proxy with a private CA.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Allow plain http to a host other than this machine. The token and every update then
    /// travel in clear: only for a trusted network.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// Refuses plain http to anything but loopback unless asked: the bearer token and the updates
/// would cross the network in clear.
fn check_transport(server: &str, allow_insecure_http: bool) -> Result<()> {
    let lower = server.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        return if rest.is_empty() {
            bail!("--server {server}: no host")
        } else {
            Ok(())
        };
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else {
        bail!("--server {server}: expected an http:// or https:// URL");
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || allow_insecure_http {
        return Ok(());
    }
    bail!(
        "--server {server}: plain http to another machine would send the client token and \
         every update in clear; use https:// (put the aggregator behind a TLS proxy), or pass \
         --allow-insecure-http on a network you trust"
    )
}

/// A thin protocol client: every non-2xx answer becomes an error carrying the server's message.
pub(crate) struct Client {
    agent: Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(server: &str, ca_cert: Option<&Path>) -> Result<Self> {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let cert = Certificate::from_pem(&pem)
                .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            config = config.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&[cert]))
                    .build(),
            );
        }
        Ok(Self {
            agent: config.build().into(),
            base: server.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token.as_deref().unwrap_or_default())
    }

    /// Sends a request and returns `(status, body)`; connection failures name the server.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth())
                .call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/octet-stream")
                .send(b),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &self.auth())
                .send_empty(),
        };
        let mut res = result.with_context(|| format!("{method} {url}: no answer"))?;
        let status = res.status().as_u16();
        let bytes = res
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        Ok((status, bytes))
    }

    /// A JSON call that must succeed.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
    ) -> Result<T> {
        let (status, body) = self.send(method, path, None)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {}", server_message(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("{method} {path}: unexpected answer"))
    }
}

/// The `error` field of an error answer, or the raw text.
pub(crate) fn server_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

pub fn run(args: FlClientArgs) -> Result<()> {
    check_transport(&args.server, args.allow_insecure_http)?;
    let sampler = DegradationSampler::parse(&args.degradation)?;
    let device = Backend::parse(&args.backend)?.device()?;
    let images = TrainingSet::load_dirs(std::slice::from_ref(&args.data))
        .with_context(|| format!("loading the images of {}", args.data.display()))?;
    let data = ClientData::new(images, sampler);
    let opts = ClientOptions {
        patch: args.patch,
        max_steps: args.max_steps,
        seed: args.seed,
    };
    let timeout = Duration::from_secs_f64(args.timeout_secs.max(1.0));
    let mut client = Client::new(&args.server, args.ca_cert.as_deref())?;
    let joined: Joined = client.json("POST", "/v1/join")?;
    client.token = Some(joined.token);
    let floor = ClientFloor::DEFAULT;
    println!(
        "this client trains at least {} steps (or --max-steps) on batches of at least {} and \
         clips what it sends to an L2 norm of at most {}, whatever the server asks",
        floor.min_steps, floor.min_batch, floor.max_clip_norm
    );
    println!(
        "joined {} as client {} with {} images ({} training patches)",
        client.base,
        joined.client_id,
        data.images.len(),
        data.num_examples(args.patch)
    );

    let mut contributed = 0;
    let mut secagg_failures = 0;
    let mut waiting_since = Instant::now();
    while contributed < args.rounds {
        let round: RoundConfig = client.json("GET", "/v1/round")?;
        if round.finished {
            println!("the server has finished training");
            break;
        }
        if !round.selected || round.submitted {
            if waiting_since.elapsed() > timeout {
                bail!(
                    "waited {:.0} s without a round to train in (round {}, version {})",
                    timeout.as_secs_f64(),
                    round.round,
                    round.global_version
                );
            }
            std::thread::sleep(Duration::from_secs_f64(
                round.retry_after_s.clamp(0.1, 10.0),
            ));
            continue;
        }
        let (status, global) = client.send("GET", "/v1/model", None)?;
        if status != 200 {
            bail!("GET /v1/model: {status} {}", server_message(&global));
        }
        let pb = crate::bar(
            0,
            "round {prefix} {bar:30} {pos}/{len} steps, loss {msg} ETA {eta}",
        );
        pb.set_prefix(round.round.to_string());
        let outcome = pollster::block_on(run_round_with_delta_async(
            &global,
            &round,
            &data,
            &opts,
            &device,
            |step, steps, loss| {
                pb.set_length(steps as u64);
                pb.set_position(step as u64);
                pb.set_message(format!("{loss:.4}"));
                std::future::ready(true)
            },
        ));
        pb.finish_and_clear();
        let (outcome, delta) = match outcome {
            Ok(o) => o,
            // The version moved on while we downloaded: ask again.
            Err(websr::WebSrError::Weights(msg)) if msg.contains("SHA-256") => {
                eprintln!("{msg}; fetching the round again");
                continue;
            }
            Err(e) => return Err(anyhow!(e)),
        };
        if round.secure_aggregation.is_some() {
            // Secure aggregation: the delta goes masked through the /v1/secagg phases.
            match crate::fl_secagg::contribute(&client, &round, joined.client_id, delta) {
                Ok(r) => {
                    println!(
                        "round {}: {} steps, loss {:.4}, delta norm {:.4} (sent {:.4}) masked \
                         through secure aggregation; {} survivors -> version {}",
                        round.round,
                        outcome.steps,
                        outcome.mean_loss,
                        outcome.norm,
                        outcome.sent_norm,
                        r.survivors.len(),
                        r.global_version
                    );
                    contributed += 1;
                    secagg_failures = 0;
                }
                Err(e) => {
                    eprintln!("round {}: secure aggregation: {e:#}", round.round);
                    secagg_failures += 1;
                    if secagg_failures >= 3 {
                        bail!("secure aggregation failed three times in a row: {e:#}");
                    }
                }
            }
            waiting_since = Instant::now();
            continue;
        }
        let (status, body) = client.send("POST", "/v1/update", Some(&outcome.body))?;
        match status {
            200 => {
                let a: Accepted = serde_json::from_slice(&body).context("update answer")?;
                println!(
                    "round {}: {} steps, {} examples, loss {:.4}, delta norm {:.4} (sent {:.4}), \
                     {} bytes sent; accepted{}",
                    round.round,
                    outcome.steps,
                    outcome.num_examples,
                    outcome.mean_loss,
                    outcome.norm,
                    outcome.sent_norm,
                    outcome.body.len(),
                    if a.round_closed {
                        format!(", round closed -> version {}", a.global_version)
                    } else {
                        String::new()
                    }
                );
                contributed += 1;
            }
            // Too late: the round closed without us (a straggler). Try the next one.
            409 => eprintln!(
                "round {}: update refused: {}",
                round.round,
                server_message(&body)
            ),
            _ => bail!("POST /v1/update: {status} {}", server_message(&body)),
        }
        waiting_since = Instant::now();
    }
    println!("contributed to {contributed} round(s)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn plain_http_goes_only_to_loopback_unless_asked() {
        for ok in [
            "http://127.0.0.1:8787",
            "http://localhost:1/",
            "http://[::1]:80",
            "https://fl.example.org",
            "HTTPS://FL.EXAMPLE.ORG/v1",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://fl.example.org",
            "http://10.0.0.2:8787",
            "http://[2001:db8::1]/",
        ] {
            let err = check_transport(refused, false).unwrap_err().to_string();
            assert!(
                err.contains("https://") && err.contains("--allow-insecure-http"),
                "{err}"
            );
            assert!(check_transport(refused, true).is_ok());
        }
        assert!(check_transport("ftp://x", true).is_err());
        assert!(check_transport("https://", false).is_err());
    }
}
