//! Cloud Trace Service: the list APIs ([`client`]), their lenient response model ([`model`]), and marker
//! paging through a window ([`paging`]).

pub mod client;
pub mod model;
pub mod paging;

pub use client::{CtsClient, CtsError, Query};
pub use model::{Page, Trace};
pub use paging::Pager;
