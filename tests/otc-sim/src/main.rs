//! `otc-sim`: runs the OTC IAM + CTS fake (NOT OTC) for the local demo. Knobs come from `OTC_SIM_*` environment
//! variables (see the crate README); `--write-clouds-yaml PATH` (or `OTC_SIM_WRITE_CLOUDS_YAML`) writes a
//! clouds.yaml pointing at it. Prints one ready line on stdout, stops gracefully on SIGTERM / SIGINT.

use std::io::Write;
use std::process::ExitCode;

use otc_sim::{AKSK_CLOUD, PASSWORD_CLOUD, SimConfig};

const USAGE: &str = "\
otc-sim: a FAKE of Open Telekom Cloud IAM + Cloud Trace Service for tests and the local demo. Not OTC.

usage: otc-sim [--write-clouds-yaml PATH]

Environment (defaults in brackets): OTC_SIM_ADDR [127.0.0.1:8900], OTC_SIM_PUBLIC_URL [http://<addr>],
OTC_SIM_SEED [42], OTC_SIM_REGION [eu-de], OTC_SIM_DOMAIN_NAME [OTC00000000001000000501],
OTC_SIM_PROJECT_NAME [<region>_otc-sim], OTC_SIM_USER [sim-user], OTC_SIM_PASSWORD [sim-password],
OTC_SIM_AK [OTCSIMACCESSKEY00001], OTC_SIM_SK [otcsimSecretKey0000000000000000000000001],
OTC_SIM_TOKEN_TTL_SECS [86400], OTC_SIM_MAX_SKEW_SECS [900], OTC_SIM_TRACE_RATE [60 per minute],
OTC_SIM_BACKFILL [200], OTC_SIM_BACKFILL_MINUTES [60], OTC_SIM_ANCHOR_MS [start time],
OTC_SIM_RECORD_LAG_MS [100-1500], OTC_SIM_LATE_FRACTION [0.02], OTC_SIM_LATE_DELAY_SECS [60-300],
OTC_SIM_TIME_FILTER [exclusive], OTC_SIM_FINAL_MARKER [null], OTC_SIM_RETENTION_DAYS [7],
OTC_SIM_FAULT_EVERY / OTC_SIM_FAULT_BURST / OTC_SIM_FAULT_KINDS [off / 1 / 429,500,503],
OTC_SIM_WORKERS [2], OTC_SIM_VERBOSE [false], OTC_SIM_WRITE_CLOUDS_YAML [unset].
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut clouds_yaml = std::env::var("OTC_SIM_WRITE_CLOUDS_YAML")
        .ok()
        .filter(|v| !v.is_empty());
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--write-clouds-yaml" => match args.next() {
                Some(p) => clouds_yaml = Some(p),
                None => {
                    eprintln!("otc-sim: --write-clouds-yaml needs a path");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("otc-sim: unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match SimConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otc-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otc-sim: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cfg, clouds_yaml))
}

async fn run(cfg: SimConfig, clouds_yaml: Option<String>) -> ExitCode {
    let sim = match cfg.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("otc-sim: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &clouds_yaml {
        if let Err(e) = sim.write_clouds_yaml(path) {
            eprintln!("otc-sim: {e}");
            sim.stop().await;
            return ExitCode::from(1);
        }
        eprintln!("otc-sim: wrote {path} (clouds {PASSWORD_CLOUD}, {AKSK_CLOUD})");
    }
    eprintln!(
        "otc-sim: a FAKE of OTC IAM + CTS (not OTC). user={} domain={} project={} ({}) traces={} rate={}/min",
        sim.credentials().user_name,
        sim.domain_name(),
        sim.project_name(),
        sim.project_id(),
        sim.trace_count(),
        sim.config().trace_rate_per_min,
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "otc-sim ready url={} auth_url={} region={} project_id={} project_name={}",
        sim.base_url(),
        sim.auth_url(),
        sim.region(),
        sim.project_id(),
        sim.project_name()
    );
    let _ = out.flush();
    drop(out);

    wait_for_signal().await;
    eprintln!("otc-sim: stopping");
    sim.stop().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
