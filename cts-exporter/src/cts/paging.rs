//! Marker paging through one window, as a resumable state machine: the marker only moves after a page was
//! received, so a failed fetch is repeated from the same place and no page is delivered twice.
//!
//! The end of a window is a `null` or `""` marker, or an empty page (some servers send one extra, empty page).
//! Traces are also checked client-side: one whose `time` is outside the window (a server reading `from`/`to`
//! inclusively) belongs to another window and is dropped here, and one already seen on the previous or current
//! page (a server whose pages overlap) is dropped as a duplicate.

use super::client::{CtsError, Query};
use super::model::{Page, Trace};
use crate::window::Window;
use std::collections::HashSet;

/// Why a trace of a page is not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Its `time` is outside the window.
    OutsideWindow,
    /// Already seen in this window.
    Duplicate,
    /// No `trace_id`, not an object.
    Invalid,
}

impl Skip {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::OutsideWindow => "outside_window",
            Skip::Duplicate => "duplicate",
            Skip::Invalid => "invalid",
        }
    }
}

/// The paging state of one window.
#[derive(Debug, Clone)]
pub struct Pager {
    window: Window,
    marker: Option<String>,
    done: bool,
    pages: u64,
    previous_ids: HashSet<String>,
    current_ids: HashSet<String>,
}

impl Pager {
    /// Paging from the first page of a window.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            marker: None,
            done: false,
            pages: 0,
            previous_ids: HashSet::new(),
            current_ids: HashSet::new(),
        }
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Pages received so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether every page has been received.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next page to fetch, or `None` when done.
    pub fn query(&self) -> Option<Query> {
        (!self.done).then(|| Query {
            window: self.window,
            marker: self.marker.clone(),
        })
    }

    /// Takes a received page: moves the marker (or finishes) and returns the traces that belong to this
    /// window, with the reasons for the ones that do not. Fails when the marker would loop.
    pub fn accept(&mut self, page: Page) -> Result<(Vec<Trace>, Vec<Skip>), CtsError> {
        let mut skipped = vec![Skip::Invalid; page.malformed];
        let next = page.marker.clone();
        if let (Some(next), Some(current)) = (&next, &self.marker)
            && next == current
            && !page.traces.is_empty()
        {
            return Err(CtsError::MarkerLoop(next.clone()));
        }
        self.pages += 1;
        if page.traces.is_empty() || next.is_none() {
            self.done = true;
        }
        self.marker = next;
        self.previous_ids = std::mem::take(&mut self.current_ids);
        let mut keep = Vec::with_capacity(page.traces.len());
        for trace in page.traces {
            let Some(id) = trace.id() else {
                skipped.push(Skip::Invalid);
                continue;
            };
            // A trace without a usable time cannot be placed in a window: it is passed on (and logged by
            // the caller) rather than lost.
            if let Some(t) = trace.time_ms()
                && !self.window.contains(t)
            {
                skipped.push(Skip::OutsideWindow);
                continue;
            }
            if self.previous_ids.contains(&id) || !self.current_ids.insert(id) {
                skipped.push(Skip::Duplicate);
                continue;
            }
            keep.push(trace);
        }
        Ok((keep, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn trace(id: &str, time: i64) -> Trace {
        let Some(obj) = json!({"trace_id": id, "time": time}).as_object().cloned() else {
            unreachable!()
        };
        Trace::new(obj)
    }

    fn page(traces: Vec<Trace>, marker: Option<&str>) -> Page {
        Page {
            traces,
            marker: marker.map(str::to_owned),
            count: None,
            malformed: 0,
        }
    }

    const W: Window = Window {
        from_ms: 1000,
        to_ms: 2000,
    };

    #[test]
    fn follows_markers_until_null() {
        let mut p = Pager::new(W);
        assert_eq!(p.query().unwrap().marker, None);
        let (kept, skipped) = p
            .accept(page(vec![trace("a", 1900), trace("b", 1800)], Some("b")))
            .unwrap();
        assert_eq!(kept.len(), 2);
        assert!(skipped.is_empty());
        assert_eq!(p.query().unwrap().marker.as_deref(), Some("b"));
        let (kept, _) = p.accept(page(vec![trace("c", 1000)], None)).unwrap();
        assert_eq!(kept.len(), 1);
        assert!(p.is_done() && p.query().is_none());
        assert_eq!(p.pages(), 2);
    }

    #[test]
    fn an_empty_page_ends_even_with_a_marker() {
        let mut p = Pager::new(W);
        p.accept(page(vec![trace("a", 1500)], Some("a"))).unwrap();
        assert!(!p.is_done());
        p.accept(page(vec![], Some("a"))).unwrap();
        assert!(p.is_done());
    }

    #[test]
    fn filters_outside_window_duplicates_and_invalid() {
        let mut p = Pager::new(W);
        let mut no_id = Map::new();
        no_id.insert("time".into(), json!(1500));
        let (kept, skipped) = p
            .accept(Page {
                traces: vec![
                    trace("late-edge", 2000),
                    trace("a", 1999),
                    trace("a", 1999),
                    Trace::new(no_id),
                    trace("early-edge", 999),
                ],
                marker: Some("x".into()),
                count: None,
                malformed: 1,
            })
            .unwrap();
        assert_eq!(
            kept.iter().map(|t| t.id().unwrap()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            skipped,
            vec![
                Skip::Invalid,
                Skip::OutsideWindow,
                Skip::Duplicate,
                Skip::Invalid,
                Skip::OutsideWindow
            ]
        );
        // A trace repeated on the next page is a duplicate too.
        let (kept, skipped) = p
            .accept(page(vec![trace("a", 1999), trace("b", 1001)], None))
            .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(skipped, vec![Skip::Duplicate]);
    }

    #[test]
    fn a_repeated_marker_is_an_error_and_paging_can_resume() {
        let mut p = Pager::new(W);
        p.accept(page(vec![trace("a", 1500)], Some("a"))).unwrap();
        let err = p
            .accept(page(vec![trace("b", 1400)], Some("a")))
            .unwrap_err();
        assert!(matches!(err, CtsError::MarkerLoop(m) if m == "a"));
        // Nothing moved: the same page is asked for again.
        assert_eq!(p.query().unwrap().marker.as_deref(), Some("a"));
    }
}
