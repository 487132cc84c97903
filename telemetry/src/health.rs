//! `polarway health` / `polarway-gateway health`: ask a server's grpc.health.v1 service whether it
//! is serving; exit 0 if so. Docker's HEALTHCHECK and shell scripts use it (plaintext gRPC only;
//! Kubernetes has native gRPC probes).

use std::time::Duration;

use anyhow::{bail, Context};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(clap::Args, Clone, Debug)]
pub struct HealthArgs {
    /// Address of the server to check (host:port); default: this binary's default address.
    #[arg(long)]
    pub addr: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// Err unless the server at `addr` answers SERVING within `timeout`.
pub async fn check(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let ask = async {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad address {addr}"))?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .with_context(|| format!("health check of {addr} failed"))?;
        anyhow::Ok(resp.into_inner().status())
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .with_context(|| format!("{addr} did not answer within {timeout:?}"))??;
    if status != ServingStatus::Serving {
        bail!("{addr} is {}", status.as_str_name());
    }
    Ok(())
}

/// Run the subcommand: print the outcome, exit 0 or 1.
pub fn run(args: &HealthArgs, default_addr: &str) -> ! {
    let addr = args.addr.as_deref().unwrap_or(default_addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(check(addr, Duration::from_secs_f64(args.timeout.max(0.1)))) {
        Ok(()) => {
            println!("{addr}: SERVING");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1)
        }
    }
}
