//! The zero-copy SIP message core: parse requests and responses from `Bytes`,
//! typed header views on demand, one-pass editing, stream framing and checks.
//!
//! ```text
//! RFC 3261 §7  SIP messages;  §18.3 framing;  §20 header fields;  §25 grammar
//! RFC 4475     torture tests (shared/tests/torture.rs)
//! ```
//! Sans-IO: no tokio here. Entry points: [`Message::parse_datagram`],
//! [`StreamFramer`], [`Editor`], [`validate::check_request`].
//!
//! ```
//! use bytes::Bytes;
//! use sipedge_shared::sip::{check_request, Editor, HeaderName, Limits, Message};
//!
//! let raw = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!            v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport\r\n\
//!            Max-Forwards: 70\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:bob@example.com>\r\n\
//!            i: abc@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
//! let msg = Message::parse_datagram(Bytes::from(raw), &Limits::default())?;
//! check_request(&msg)?; // Err(e) => answer e.status() with e.reason()
//! let via = msg.find(HeaderName::Via).expect("checked");
//! let mf = msg.max_forwards()?.and_then(|m| m.decrement()).expect("not 0");
//! let mut e = Editor::new(&msg);
//! e.set_via_param(via, "received", Some("198.51.100.7"));
//! e.set_via_param(via, "rport", Some("5062"));
//! e.insert_top(HeaderName::Via, "SIP/2.0/UDP 10.0.1.1;branch=z9hG4bKlb1");
//! e.replace_value(msg.find(HeaderName::MaxForwards).expect("present"), &mf.to_string());
//! let out = Message::parse_datagram(e.finish(), &Limits::default())?;
//! assert_eq!(out.top_via()?.host_str, "10.0.1.1");
//! assert_eq!(out.vias().nth(1).and_then(Result::ok).and_then(|v| v.rport), Some(Some(5062)));
//! # Ok::<(), sipedge_shared::sip::ParseError>(())
//! ```

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
pub use validate::{check_request, check_response, Checked};
pub use via::{Branch, Via};
