//! Where events go: pushed to `K_SINK` with the shared delivery client (`CTS_X_PNP=true`), or printed as one
//! JSON event (structured JSON format) per line (`CTS_X_PNP=false`).

use shared::cloudevent::json::event_to_json;
use shared::cloudevent::{AttributesReader, CeOverrides, EncodedRequest, Event};
use shared::delivery::{DeliveryError, Sender};
use shared::retry::Backoff;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The longest pause between two rounds of retries of one event while the sink is down (polling mode).
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(60);

/// How one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The sink accepted it (or it was printed).
    Delivered,
    /// The sink refused it for good (a 4xx other than the retryable ones) or it cannot be encoded.
    Rejected(String),
    /// Every retry failed (only in `--once` mode; polling mode keeps retrying).
    Failed(String),
}

/// An event ready to be delivered.
#[derive(Debug)]
pub struct Prepared {
    /// The event id (for logs).
    pub id: String,
    payload: Payload,
}

#[derive(Debug)]
enum Payload {
    Encoded(EncodedRequest),
    Line(String),
    Invalid(String),
}

/// The destination of events.
pub enum Output {
    /// Push to the sink.
    Push(Box<Sender>),
    /// Print JSON lines.
    Lines {
        /// `K_CE_OVERRIDES`, applied before printing.
        overrides: CeOverrides,
        /// The writer (stdout in production).
        out: Mutex<Box<dyn Write + Send>>,
    },
}

impl Output {
    /// JSON lines on stdout.
    pub fn stdout(overrides: CeOverrides) -> Self {
        Self::lines(
            overrides,
            Box::new(std::io::BufWriter::new(std::io::stdout())),
        )
    }

    /// JSON lines on any writer.
    pub fn lines(overrides: CeOverrides, out: Box<dyn Write + Send>) -> Self {
        Output::Lines {
            overrides,
            out: Mutex::new(out),
        }
    }

    /// `delivered` or `printed` (metrics label for success).
    pub fn success_label(&self) -> &'static str {
        match self {
            Output::Push(_) => "delivered",
            Output::Lines { .. } => "printed",
        }
    }

    /// Turns an event into what goes on the wire (`K_CE_OVERRIDES` applied, encoded for the sink or rendered
    /// as a JSON line). CPU work only, done ahead of delivery.
    pub fn prepare(&self, event: Event) -> Prepared {
        let id = event.id().to_owned();
        let payload = match self {
            Output::Push(sender) => match sender.encode(event) {
                Ok(e) => Payload::Encoded(e),
                Err(e) => Payload::Invalid(format!("cannot encode event {id}: {e}")),
            },
            Output::Lines { overrides, .. } => {
                let mut event = event;
                overrides.apply(&mut event);
                Payload::Line(event_to_json(&event).to_string())
            }
        };
        Prepared { id, payload }
    }

    /// Delivers one event (see [`Output::deliver_prepared`]).
    pub async fn deliver(&self, event: Event, persist: bool) -> Delivery {
        self.deliver_prepared(self.prepare(event), persist).await
    }

    /// Delivers a prepared event. With `persist` (polling mode) a sink outage that outlasts the retry policy
    /// is waited out (round after round, with growing pauses) instead of failing the event.
    pub async fn deliver_prepared(&self, prepared: Prepared, persist: bool) -> Delivery {
        let Prepared { id, payload } = prepared;
        match (self, payload) {
            (_, Payload::Invalid(reason)) => Delivery::Rejected(reason),
            (Output::Push(sender), Payload::Encoded(encoded)) => {
                let mut backoff = Backoff::new(Duration::from_secs(1), MAX_OUTAGE_PAUSE);
                loop {
                    match sender.send_encoded(&encoded).await {
                        Ok(_) => return Delivery::Delivered,
                        Err(e @ (DeliveryError::Rejected { .. } | DeliveryError::Encode(_))) => {
                            return Delivery::Rejected(e.to_string());
                        }
                        Err(e) if !persist => return Delivery::Failed(e.to_string()),
                        Err(e) => {
                            let pause = backoff.pause();
                            tracing::warn!(event_id = %id, error = %e, pause_s = pause.as_secs(), "sink unavailable; the event will be retried");
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            }
            (Output::Lines { out, .. }, Payload::Line(line)) => {
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                match writeln!(out, "{line}") {
                    Ok(()) => Delivery::Delivered,
                    Err(e) => Delivery::Failed(format!("cannot write to stdout: {e}")),
                }
            }
            // An event prepared for another output (cannot happen: one output per process).
            (_, _) => Delivery::Rejected(format!("event {id} was prepared for another output")),
        }
    }

    /// Flushes printed lines (before a window counts as delivered).
    pub fn flush(&self) -> std::io::Result<()> {
        match self {
            Output::Push(_) => Ok(()),
            Output::Lines { out, .. } => out.lock().unwrap_or_else(|p| p.into_inner()).flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::cloudevent::{EventBuilder, EventBuilderV10};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_are_structured_json_with_overrides() {
        let buf = Buf::default();
        let out = Output::lines(
            CeOverrides::parse(r#"{"extensions":{"Env":"prod"}}"#).unwrap(),
            Box::new(buf.clone()),
        );
        let event = EventBuilderV10::new()
            .id("t1")
            .source("https://cts/v2.0/p/")
            .ty("ecs.apicall.server.deleteserver")
            .data("application/json", serde_json::json!({"trace_id": "t1"}))
            .build()
            .unwrap();
        assert_eq!(out.deliver(event, false).await, Delivery::Delivered);
        out.flush().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "t1");
        assert_eq!(v["env"], "prod");
        assert_eq!(v["data"]["trace_id"], "t1");
        assert_eq!(text.lines().count(), 1);
        assert_eq!(out.success_label(), "printed");
    }
}
