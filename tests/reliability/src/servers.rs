//! Private instances of the stack's real servers (the same binaries and settings as
//! `scripts/lib/stack.sh`) that a test can kill and restart without disturbing other tests:
//! ArcadeDB with its Bolt plugin, and InfluxDB 1.x. Data directories survive restarts.

use crate::graph::Graph;
use crate::process::{free_port, wait_http_ok};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn signal(child: &mut Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The Python of the stack's venv (`TEST_PYTHON`, else `<repo>/.venv/bin/python`).
fn python() -> PathBuf {
    match std::env::var("TEST_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// An ArcadeDB server of this test (database `neo4j`, user `root`).
pub struct ArcadeDb {
    dir: PathBuf,
    home: PathBuf,
    http_port: u16,
    bolt_port: u16,
    child: Option<Child>,
    /// Starts so far.
    pub starts: u32,
}

/// The root password of private ArcadeDB instances (the stack's).
pub const ARCADEDB_PASSWORD: &str = "playwithdata";

impl ArcadeDb {
    /// Starts one in `dir` on free ports; `None` (skipped) when the stack's ArcadeDB is not
    /// configured (`TEST_BOLT_URI` unset) and servers are not required.
    pub async fn start(dir: &Path) -> Option<Self> {
        shared::testkit::require_env("TEST_BOLT_URI", "Bolt server (ArcadeDB)")?;
        let out = Command::new(python())
            .args([
                "-c",
                "import importlib.util as u,os;print(os.path.dirname(u.find_spec('arcadedb_embedded').origin))",
            ])
            .output()
            .expect("the stack's Python (TEST_PYTHON) with arcadedb_embedded");
        assert!(
            out.status.success(),
            "arcadedb_embedded not installed in the venv"
        );
        let home = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let mut db = Self {
            dir: dir.to_owned(),
            home,
            http_port: free_port(),
            bolt_port: free_port(),
            child: None,
            starts: 0,
        };
        db.restart().await;
        Some(db)
    }

    /// Starts the server (again, same ports and data) and waits until it is ready.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "ArcadeDB already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("arcadedb.log"))
            .expect("arcadedb.log");
        let child = Command::new(self.home.join("jre/bin/java"))
            .current_dir(&self.dir)
            .arg(format!(
                "-Xmx{}",
                std::env::var("ARCADEDB_HEAP").unwrap_or_else(|_| "512m".into())
            ))
            .arg("-cp")
            .arg(format!("{}/jars/*", self.home.display()))
            .arg(format!(
                "-Darcadedb.server.rootPath={}/arcadedb",
                self.dir.display()
            ))
            .arg(format!(
                "-Darcadedb.server.rootPassword={ARCADEDB_PASSWORD}"
            ))
            .arg("-Darcadedb.server.httpIncomingHost=127.0.0.1")
            .arg(format!(
                "-Darcadedb.server.httpIncomingPort={}",
                self.http_port
            ))
            .arg("-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin")
            .arg("-Darcadedb.bolt.host=127.0.0.1")
            .arg(format!("-Darcadedb.bolt.port={}", self.bolt_port))
            .arg("-Darcadedb.server.defaultDatabases=neo4j[root]")
            .arg("com.arcadedb.server.ArcadeDBServer")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start ArcadeDB (java)");
        self.child = Some(child);
        self.starts += 1;
        wait_http_ok(
            &format!("http://127.0.0.1:{}/api/v1/ready", self.http_port),
            Duration::from_secs(180),
        )
        .await;
    }

    /// SIGKILL: the server dies without a chance to flush or close connections.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, "-KILL");
        }
    }

    /// The graph API of this server.
    pub fn graph(&self) -> Graph {
        Graph(shared::testkit::ArcadeHttp {
            http: format!("http://127.0.0.1:{}", self.http_port),
            bolt: format!("bolt://127.0.0.1:{}", self.bolt_port),
            user: "root".into(),
            password: ARCADEDB_PASSWORD.into(),
        })
    }
}

impl Drop for ArcadeDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, "-TERM");
        }
    }
}

/// An InfluxDB 1.x server of this test (no auth), data kept across restarts.
pub struct Influx {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Influx {
    /// Starts one in `dir` on free ports; `None` (skipped) when the stack's InfluxDB is not
    /// configured (`TEST_INFLUX_URL` unset) and servers are not required.
    pub async fn start(dir: &Path) -> Option<Self> {
        shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x")?;
        let (port, rpc) = (free_port(), free_port());
        let d = dir.join("influxdb");
        std::fs::create_dir_all(&d).expect("influx dir");
        let conf = format!(
            "reporting-enabled = false\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[monitor]\n  store-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  auth-enabled = false\n  log-enabled = false\n",
            d = d.display()
        );
        std::fs::write(d.join("influxdb.conf"), conf).expect("influxdb.conf");
        let mut s = Self {
            dir: d,
            port,
            child: None,
        };
        s.restart().await;
        Some(s)
    }

    /// Starts the server (again) and waits for `/ping`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "InfluxDB already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("influxdb.log"))
            .expect("influxdb.log");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start influxd");
        self.child = Some(child);
        wait_http_ok(&format!("{}/ping", self.url()), Duration::from_secs(60)).await;
    }

    /// Stops it (SIGTERM, as a node shutting down would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, "-TERM");
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an InfluxQL query on `db` and returns the `series` of the first result.
    pub async fn query(&self, db: &str, q: &str) -> Vec<serde_json::Value> {
        let mut url = url::Url::parse(&format!("{}/query", self.url())).expect("InfluxDB URL");
        url.query_pairs_mut()
            .append_pair("db", db)
            .append_pair("q", q);
        let r = shared::testkit::http_client()
            .get(url)
            .send()
            .await
            .expect("InfluxDB query");
        let body: serde_json::Value = r.json().await.expect("InfluxDB JSON");
        body["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs an InfluxQL statement (`CREATE DATABASE ...`) on the InfluxDB at `url`.
pub async fn influx_exec(url: &str, q: &str) {
    let mut u = url::Url::parse(&format!("{url}/query")).expect("InfluxDB URL");
    u.query_pairs_mut().append_pair("q", q);
    let r = shared::testkit::http_client()
        .post(u)
        .send()
        .await
        .expect("InfluxDB");
    assert!(r.status().is_success(), "{q}: {}", r.status());
}

/// The JSON answer of InfluxQL query `q` against database `db`.
pub async fn influx_query(url: &str, db: &str, q: &str) -> serde_json::Value {
    let mut u = url::Url::parse(&format!("{url}/query")).expect("InfluxDB URL");
    u.query_pairs_mut()
        .append_pair("db", db)
        .append_pair("q", q);
    shared::testkit::http_get(u)
        .await
        .expect("InfluxDB")
        .json()
        .await
        .expect("InfluxDB JSON")
}

/// Every point of database `db` as sorted text lines `measurement tags... | columns=values`,
/// for comparing two databases.
pub async fn influx_points(url: &str, db: &str) -> Vec<String> {
    let body = influx_query(url, db, "SELECT * FROM /.*/ GROUP BY *").await;
    let mut out = Vec::new();
    for s in body["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let cols = s["columns"].as_array().cloned().unwrap_or_default();
        for v in s["values"].as_array().into_iter().flatten() {
            let vals = v.as_array().cloned().unwrap_or_default();
            let row: Vec<String> = cols
                .iter()
                .zip(vals.iter())
                .filter(|(_, v)| !v.is_null())
                .map(|(c, v)| format!("{}={v}", c.as_str().unwrap_or_default()))
                .collect();
            out.push(format!("{} {} | {}", s["name"], s["tags"], row.join(",")));
        }
    }
    out.sort();
    out
}
