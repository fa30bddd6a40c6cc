//! Step 1's answer to a request that does not parse: a 400 (or 505, 413 …)
//! built from the header lines we can still find, so the sender learns why
//! instead of retransmitting into silence. Responses that do not parse are
//! dropped (RFC 4475 §3.1.2.5).
//!
//! ```text
//! RFC 3261 §16.3: If ... the request is malformed ... the element MUST
//!   respond with an error response (e.g. 400 Bad Request) ...
//! ```

use std::fmt::Write;

/// The headers a response copies from its request (RFC 3261 §8.2.6.2), by
/// long and compact name.
const COPIED: [(&str, &str); 5] = [
    ("via", "v"),
    ("from", "f"),
    ("to", "t"),
    ("call-id", "i"),
    ("cseq", ""),
];

/// Builds an error response to the unparsable request `raw`, or `None` when
/// `raw` is not recognisably a request or lacks the headers a response needs.
pub fn error_response(raw: &[u8], status: u16, reason: &str) -> Option<String> {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let head = std::str::from_utf8(raw.get(..head_end)?).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    // A request line ends with the version; a response starts with it.
    if start.starts_with("SIP/") || !start.contains(" SIP/") {
        return None;
    }
    let mut found = [false; 5];
    let mut out = String::with_capacity(head.len() / 2 + 64);
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let _ = write!(out, "SIP/2.0 {status} {reason}\r\n");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let Some(i) = COPIED
            .iter()
            .position(|(long, short)| name == *long || (!short.is_empty() && name == *short))
        else {
            continue;
        };
        found[i] = true;
        let value = value.trim();
        let canonical = ["Via", "From", "To", "Call-ID", "CSeq"][i];
        if i == 2 && !value.contains(";tag=") {
            let _ = write!(out, "{canonical}: {value};tag=se400\r\n");
        } else {
            let _ = write!(out, "{canonical}: {value}\r\n");
        }
    }
    if !found.iter().all(|f| *f) {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\nshort";

    #[test]
    fn answers_a_request_with_the_copied_headers() {
        let r =
            error_response(REQ.as_bytes(), 400, "Bad Request (Content-Length)").expect("request");
        assert!(
            r.starts_with("SIP/2.0 400 Bad Request (Content-Length)\r\n"),
            "{r}"
        );
        assert!(r.contains("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"), "{r}");
        assert!(r.contains("To: <sip:a@b>;tag=se400\r\n"), "{r}");
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"), "{r}");
    }

    #[test]
    fn responses_and_fragments_get_nothing() {
        for bad in [
            "SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            "",
            "\u{0}\u{1}",
            "INVITE sip:a@b SIP/2.0\r\nVia: v\r\n\r\n",
        ] {
            assert_eq!(error_response(bad.as_bytes(), 400, "x"), None, "{bad:?}");
        }
    }
}
