//! Delivery benchmark (not a test): `cargo bench -p cts-exporter --bench deliver`.
//!
//! 1. Throughput: a 50,000-trace window from the OTC simulator (a FAKE of IAM + CTS) delivered by the
//!    exporter (in-process, `--once`, default concurrency) to a local accept-all HTTP receiver, against a
//!    baseline measured in the same run: a bare reqwest loop posting the same pre-encoded events to the same
//!    receiver at the same concurrency. Target: the exporter reaches at least 50% of the baseline.
//! 2. Memory: the exporter binary run as a child with `--once` on 5,000 and on 50,000 traces; its peak RSS
//!    (`VmHWM`, which it reports when it exits). Target: at most 30 MB, and flat within 20%.
//!
//! `BENCH_TRACES` changes the large window (default 50000).

use cts_exporter::clouds::CloudsEnv;
use cts_exporter::cts::Pager;
use cts_exporter::event::trace_to_event;
use cts_exporter::exporter::Exporter;
use cts_exporter::window::Window;
use cts_exporter::{Args, Config};
use futures_util::StreamExt;
use otc_sim::OtcSim;
use prometheus::Registry;
use shared::cloudevent::EncodedRequest;
use shared::delivery::{DeliveryConfig, Sender};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WINDOW: Duration = Duration::from_secs(10 * 60);

/// A minimal HTTP/1.1 server answering every request `202 Accepted` (keep-alive), counting requests.
struct AcceptAll {
    url: String,
    count: Arc<AtomicU64>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

async fn serve(mut s: TcpStream, count: Arc<AtomicU64>) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let total = end + 4 + content_length(&buf[..end]);
            if buf.len() < total {
                break;
            }
            buf.drain(..total);
            count.fetch_add(1, Ordering::Relaxed);
            s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                .await?;
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

impl AcceptAll {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, c.clone()));
            }
        });
        Self { url, count }
    }
}

async fn sim(traces: usize) -> OtcSim {
    OtcSim::builder()
        .seed(2024)
        .anchor_ms(otc_sim::now_ms() - 30_000)
        .backfill(traces, WINDOW - Duration::from_secs(60))
        .prerender(true)
        .workers(1)
        .start()
        .await
        .expect("otc-sim")
}

fn vars(sim: &OtcSim, dir: &Path, sink: &str) -> Vec<(String, String)> {
    let clouds = dir.join("clouds.yaml");
    sim.write_clouds_yaml(&clouds).expect("clouds.yaml");
    [
        ("OS_CLIENT_CONFIG_FILE", clouds.display().to_string()),
        ("OS_CLOUD", otc_sim::PASSWORD_CLOUD.to_owned()),
        ("K_SINK", sink.to_owned()),
        ("CTS_FROM", "11".to_owned()),
        ("CTS_LAG_SECONDS", "0".to_owned()),
        ("OIDC_TOKEN_PATH", "/nonexistent".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn config(vars: Vec<(String, String)>, dir: &Path) -> Config {
    let env = CloudsEnv {
        vars: vars.iter().cloned().collect(),
        cwd: dir.to_owned(),
        home: None,
        etc: dir.join("none"),
    };
    Config::from_parts(vars, &env, Args { once: true }).expect("config")
}

/// The exporter in-process: events per second for one `--once` window.
async fn exporter_run(config: &Config, receiver: &AcceptAll, expected: usize) -> f64 {
    let before = receiver.count.load(Ordering::Relaxed);
    let exporter = Exporter::connect(config, &Registry::new())
        .await
        .expect("start");
    let started = Instant::now();
    let report = exporter.run_once(std::future::pending()).await;
    let secs = started.elapsed().as_secs_f64();
    let got = receiver.count.load(Ordering::Relaxed) - before;
    assert!(report.complete, "{report:?}");
    assert_eq!(
        usize::try_from(got).unwrap_or(0),
        expected,
        "every event delivered once"
    );
    expected as f64 / secs
}

/// Fetches the window once and encodes every event as the exporter would put it on the wire.
async fn pre_encode(config: &Config, sender: &Sender) -> Vec<EncodedRequest> {
    let exporter = Exporter::connect(config, &Registry::new())
        .await
        .expect("start");
    let now = otc_sim::now_ms();
    let window = Window {
        from_ms: now - i64::try_from(config.window.as_millis()).unwrap_or(0),
        to_ms: now,
    };
    let ctx = cts_exporter::event::EventContext {
        source: exporter.source().to_owned(),
        region: exporter.identity().region.clone(),
        domain: exporter.identity().domain_id.clone(),
        tenant: exporter.identity().project_id.clone(),
        api: config.api,
        passthrough: true,
    };
    let mut pager = Pager::new(window);
    let mut out = Vec::new();
    while let Some(q) = pager.query() {
        let page = exporter.cts().fetch(&q).await.expect("page");
        let (traces, _) = pager.accept(page).expect("accept");
        for t in traces {
            let event = trace_to_event(t, &ctx).expect("event");
            out.push(sender.encode(event).expect("encode"));
        }
    }
    out
}

/// Pages through the window only (simulator rendering + transfer + JSON parsing): the ceiling the simulator
/// puts on any exporter.
async fn paging_only(config: &Config) -> f64 {
    let exporter = Exporter::connect(config, &Registry::new())
        .await
        .expect("start");
    let now = otc_sim::now_ms();
    let mut pager = Pager::new(Window {
        from_ms: now - i64::try_from(config.window.as_millis()).unwrap_or(0),
        to_ms: now,
    });
    let started = Instant::now();
    let mut n = 0usize;
    while let Some(q) = pager.query() {
        let page = exporter.cts().fetch(&q).await.expect("page");
        n += pager.accept(page).expect("accept").0.len();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The baseline: a bare reqwest loop posting pre-encoded events at `concurrency`.
async fn baseline_run(events: &[EncodedRequest], url: &str, concurrency: usize) -> f64 {
    shared::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let started = Instant::now();
    futures_util::stream::iter(events)
        .for_each_concurrent(concurrency, |e| {
            let client = client.clone();
            async move {
                let r = client
                    .post(url)
                    .headers(e.headers.clone())
                    .body(e.body.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 202);
            }
        })
        .await;
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// The shared delivery client alone (`Sender::send_encoded`, metrics on) over the same pre-encoded events.
async fn sender_run(events: &[EncodedRequest], sender: &Sender, concurrency: usize) -> f64 {
    let started = Instant::now();
    futures_util::stream::iter(events)
        .for_each_concurrent(concurrency, |e| async move {
            sender.send_encoded(e).await.expect("delivered");
        })
        .await;
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// Runs the exporter binary with `--once` and returns its peak RSS in kB (from its final log line).
fn binary_peak_rss_kb(vars: &[(String, String)], dir: &Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_cts-exporter"))
        .arg("--once")
        .env_clear()
        .env("HOME", dir)
        .env("LOG_FORMAT", "json")
        .envs(vars.iter().cloned())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the exporter binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exporter failed: {stdout}");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("peak_rss_kb").and_then(serde_json::Value::as_u64))
        .expect("peak_rss_kb in the exporter's last log line")
}

/// Fields of `/proc/self/stat` after the command name, as clock ticks turned into seconds.
fn stat_s(fields: &[usize]) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    fields.iter().map(|&i| t(i)).sum::<f64>() / 100.0
}

/// CPU seconds (user + system) used so far by this whole process: simulator, receiver and client together.
fn cpu_s() -> f64 {
    stat_s(&[11, 12])
}

/// CPU seconds (user + system) of the child processes this process has waited for (`cutime + cstime`):
/// the exporter binary's own CPU, without the simulator or the receiver.
fn children_cpu_s() -> f64 {
    stat_s(&[13, 14])
}

/// Median, min and max of `v` (not empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// The machine's load averages, as `/proc/loadavg` gives them.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    shared::tls::install_crypto_provider();
    let big: usize = std::env::var("BENCH_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("cts-exporter-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let receiver = AcceptAll::start().await;
        let large = sim(big).await;
        let config = config(vars(&large, &dir, &receiver.url), &dir);
        let concurrency = config.sink_concurrency;
        let rounds: usize = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        println!(
            "cts-exporter delivery benchmark: {big} traces, concurrency {concurrency}, {rounds} rounds (exporter, baseline, sender in turn), load {}",
            load()
        );

        let sender = Sender::new(config.delivery.clone().unwrap_or_else(|| {
            DeliveryConfig::new(receiver.url.parse().expect("url"))
        }))
        .expect("sender");
        let c = cpu_s();
        println!(
            "  CTS paging alone (simulator + parsing):    {:>9.0} events/s",
            paging_only(&config).await
        );
        println!("    process CPU: {:.1} µs per trace", (cpu_s() - c) * 1e6 / big as f64);
        let started = Instant::now();
        let encoded = pre_encode(&config, &sender).await;
        assert_eq!(encoded.len(), big);
        println!(
            "  paging + encoding alone (one task):        {:>9.0} events/s",
            big as f64 / started.elapsed().as_secs_f64()
        );

        let (mut exporter, mut baseline, mut senders, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut exporter_cpu, mut baseline_cpu) = (Vec::new(), Vec::new());
        let metered = sender.clone().with_metrics(&Registry::new()).expect("metrics");
        let per_event = |c: f64| (cpu_s() - c) * 1e6 / big as f64;
        for round in 1..=rounds {
            let c = cpu_s();
            let e = exporter_run(&config, &receiver, big).await;
            exporter_cpu.push(per_event(c));
            let c = cpu_s();
            let b = baseline_run(&encoded, &receiver.url, concurrency).await;
            baseline_cpu.push(per_event(c));
            let s = sender_run(&encoded, &metered, concurrency).await;
            println!(
                "    round {round}: exporter {e:.0} ev/s ({:.1} µs CPU/event), baseline {b:.0} ev/s ({:.1} µs), ratio {:.0}%, sender {s:.0} ev/s; load {}",
                exporter_cpu[round - 1],
                baseline_cpu[round - 1],
                100.0 * e / b,
                load()
            );
            exporter.push(e);
            baseline.push(b);
            senders.push(s);
            ratios.push(e / b);
        }
        drop(encoded);
        let show = |name: &str, v: &[f64], unit: &str| {
            let (med, min, max) = spread(v);
            println!("  {name:<44} median {med:>9.1} (min {min:.1}, max {max:.1}) {unit}, {} runs", v.len());
        };
        show("exporter (CTS paging + events + delivery):", &exporter, "events/s");
        show("baseline (bare reqwest, pre-encoded):", &baseline, "events/s");
        show("shared::delivery::Sender, pre-encoded:", &senders, "events/s");
        show("process CPU per event, exporter run:", &exporter_cpu, "µs");
        show("process CPU per event, baseline run:", &baseline_cpu, "µs");
        let ratios_pct: Vec<f64> = ratios.iter().map(|r| r * 100.0).collect();
        show("ratio exporter / baseline, per round:", &ratios_pct, "%");
        let (ratio, _, _) = spread(&ratios);
        println!(
            "  median ratio {:.0}% of the baseline (target >= 50%): {}",
            ratio * 100.0,
            if ratio >= 0.5 { "OK" } else { "BELOW TARGET" }
        );

        let small = sim(big / 10).await;
        let small_dir = dir.join("small");
        std::fs::create_dir_all(&small_dir).expect("dir");
        let small_vars = vars(&small, &small_dir, &receiver.url);
        let large_vars = vars(&large, &dir, &receiver.url);
        // The binary alone, as a child: its peak RSS and its own CPU per event (cutime + cstime: no
        // simulator or receiver in it), which moves far less with the machine's load than its rate.
        let binary_rounds = rounds.min(3);
        let runs = tokio::task::spawn_blocking(move || {
            (0..binary_rounds)
                .map(|_| {
                    let small = binary_peak_rss_kb(&small_vars, &small_dir);
                    let c = children_cpu_s();
                    let large = binary_peak_rss_kb(&large_vars, &dir);
                    (small, large, (children_cpu_s() - c) * 1e6 / big as f64)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("binary runs");
        let mb = |kb: u64| kb as f64 / 1024.0;
        let small_mb: Vec<f64> = runs.iter().map(|r| mb(r.0)).collect();
        let large_mb: Vec<f64> = runs.iter().map(|r| mb(r.1)).collect();
        let growth: Vec<f64> = runs.iter().map(|r| 100.0 * (r.1 as f64 / r.0 as f64 - 1.0)).collect();
        let binary_cpu: Vec<f64> = runs.iter().map(|r| r.2).collect();
        show(&format!("binary peak RSS, {} traces:", big / 10), &small_mb, "MB");
        show(&format!("binary peak RSS, {big} traces:"), &large_mb, "MB");
        show("binary RSS growth, large vs small:", &growth, "%");
        show(&format!("binary CPU per event ({big} traces):"), &binary_cpu, "µs");
        let worst_large = large_mb.iter().copied().fold(0.0, f64::max);
        let worst_growth = growth.iter().copied().fold(0.0, |a: f64, g| a.max(g.abs()));
        println!(
            "  peak RSS target <= 30 MB and within 20% over every run: {}",
            if worst_large <= 30.0 && worst_growth <= 20.0 {
                "OK"
            } else {
                "BELOW TARGET"
            }
        );
        large.stop().await;
        small.stop().await;
    });
}
