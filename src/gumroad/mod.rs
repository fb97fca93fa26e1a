//! The Gumroad ping format: the body parser (form or JSON, Gumroad's own encoding) and the typed pings read from it.

mod event;
mod form;
mod ping;
pub mod readback;

pub use event::{EventKind, EventSubject, GumroadEvent, PlanDirection, PlanUpdate, parse_time};
pub use form::{BodyError, Form, MAX_BODY_BYTES};
pub use ping::{Gift, Ping, PingError, SalePing, one_line};
