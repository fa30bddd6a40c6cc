//! The zero-copy SIP message core: parse requests and responses from `Bytes`,
//! typed header views on demand, one-pass editing, stream framing and checks.
//!
//! ```text
//! RFC 3261 §7  SIP messages;  §18.3 framing;  §20 header fields;  §25 grammar
//! RFC 4475     torture tests (shared/tests/torture.rs)
//! ```
//! Sans-IO: no tokio here. Entry points: [`Message::parse_datagram`],
//! [`StreamFramer`], [`Editor`], [`validate::check_request`].

pub mod call_id;
pub mod contact;
pub mod content_length;
pub mod cseq;
pub mod edit;
pub mod error;
#[doc(hidden)]
pub mod fixtures;
pub mod framing;
pub mod header_name;
pub mod limits;
pub mod max_forwards;
pub mod message;
pub mod method;
pub mod name_addr;
pub mod response;
pub mod route;
mod scan;
pub mod uri;
pub mod validate;
pub mod via;

pub use call_id::parse_call_id;
pub use contact::{Contact, ContactList, ContactValue};
pub use content_length::parse_content_length;
pub use cseq::CSeq;
pub use edit::Editor;
pub use error::ParseError;
pub use framing::{FrameEvent, StreamFramer};
pub use header_name::HeaderName;
pub use limits::Limits;
pub use max_forwards::MaxForwards;
pub use message::{unfold, HeaderEntry, Message, Span, StartLine, Values};
pub use method::Method;
pub use name_addr::NameAddr;
pub use response::{build_response, write_response};
pub use route::NameAddrs;
pub use scan::{ParamIter, Params};
pub use uri::{Host, Scheme, Uri};
pub use validate::{check_request, check_response};
pub use via::{Branch, Via};
