//! A tiny scanner for OPTIONS responses: status code, top Via branch, Call-ID
//! and stream framing. Stop-gap until the shared SIP parser (`shared::sip`,
//! branch `core`) is merged; then this file is replaced by it.

/// Limit on a probe response (header section plus body).
pub const MAX_RESPONSE: usize = 16 * 1024;

/// What the prober needs from a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResponse<'a> {
    /// Status code (100–699).
    pub code: u16,
    /// `branch` parameter of the top Via, if any.
    pub branch: Option<&'a str>,
    /// Call-ID value, if any.
    pub call_id: Option<&'a str>,
}

/// Why a datagram or frame was not a usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeParseError {
    /// Not valid UTF-8 in the header section.
    #[error("header section is not UTF-8")]
    NotText,
    /// The first line is not `SIP/2.0 NNN reason`.
    #[error("not a SIP/2.0 status line")]
    BadStatusLine,
    /// No empty line ends the header section.
    #[error("header section not terminated")]
    Unterminated,
    /// Content-Length missing on a stream or not a number.
    #[error("missing or bad Content-Length")]
    BadContentLength,
    /// Larger than [`MAX_RESPONSE`].
    #[error("response larger than {MAX_RESPONSE} bytes")]
    TooLarge,
}

/// Header name match with the RFC 3261 §7.3.3 compact forms.
fn is_header(name: &str, long: &str, compact: &str) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(compact)
}

/// Parses the header section of a response (body ignored).
///
/// ```text
/// RFC 3261 §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
/// ```
pub fn parse_response(buf: &[u8]) -> Result<ProbeResponse<'_>, ProbeParseError> {
    let head_end = find_head_end(buf).ok_or(ProbeParseError::Unterminated)?;
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ProbeParseError::NotText)?;
    let mut lines = head.split("\r\n");
    let status = lines.next().ok_or(ProbeParseError::BadStatusLine)?;
    let rest = status
        .strip_prefix("SIP/2.0 ")
        .ok_or(ProbeParseError::BadStatusLine)?;
    let code_text = rest.get(..3).ok_or(ProbeParseError::BadStatusLine)?;
    let code: u16 = code_text
        .parse()
        .map_err(|_| ProbeParseError::BadStatusLine)?;
    if !(100..=699).contains(&code) || rest.as_bytes().get(3).is_some_and(|b| *b != b' ') {
        return Err(ProbeParseError::BadStatusLine);
    }
    let mut branch = None;
    let mut call_id = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if branch.is_none() && is_header(name, "Via", "v") {
            // Only the top Via value counts: the first one in the first Via line.
            let top = value.split(',').next().unwrap_or(value);
            branch = top
                .split(';')
                .skip(1)
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
                .map(|(_, v)| v.trim());
            if branch.is_none() {
                branch = Some("");
            }
        } else if call_id.is_none() && is_header(name, "Call-ID", "i") {
            call_id = Some(value);
        }
    }
    Ok(ProbeResponse {
        branch: branch.filter(|b| !b.is_empty()),
        code,
        call_id,
    })
}

/// The length of the first complete message in a stream buffer: `Ok(None)`
/// when more bytes are needed. Leading CRLF keepalives are counted as a
/// zero-content frame of their own length, which callers skip.
///
/// ```text
/// RFC 3261 §18.3: In the case of stream-oriented transports such as TCP,
/// the Content-Length header field indicates the size of the body. The
/// Content-Length header field MUST be used with stream oriented transports.
/// ```
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ProbeParseError> {
    let crlfs = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlfs > 0 {
        return Ok(Some(crlfs));
    }
    let Some(head_end) = find_head_end(buf) else {
        return if buf.len() > MAX_RESPONSE {
            Err(ProbeParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ProbeParseError::NotText)?;
    let len = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| is_header(n.trim(), "Content-Length", "l"))
        .ok_or(ProbeParseError::BadContentLength)?
        .1
        .trim()
        .parse::<usize>()
        .map_err(|_| ProbeParseError::BadContentLength)?;
    let total = head_end + 4 + len;
    if total > MAX_RESPONSE {
        return Err(ProbeParseError::TooLarge);
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Index of the `\r\n\r\n` that ends the header section.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bKabc;rport=5000;received=127.0.0.1, SIP/2.0/UDP x;branch=z9hG4bKother\r\n\
Call-ID: cid1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 4\r\n\
\r\n\
abcd";

    type Parsed<'a> = Result<(u16, Option<&'a str>, Option<&'a str>), ProbeParseError>;
    type Framed = Result<Option<usize>, ProbeParseError>;

    #[test]
    fn responses() {
        let cases: &[(&[u8], Parsed)] = &[
            (OK, Ok((200, Some("z9hG4bKabc"), Some("cid1@127.0.0.1")))),
            (
                b"SIP/2.0 100 Trying\r\nv: SIP/2.0/UDP h;branch=z9hG4bKq\r\ni: c2\r\n\r\n",
                Ok((100, Some("z9hG4bKq"), Some("c2"))),
            ),
            (
                b"SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP h\r\n\r\n",
                Ok((503, None, None)),
            ),
            (b"SIP/2.0 99 x\r\n\r\n", Err(ProbeParseError::BadStatusLine)),
            (
                b"SIP/2.0 2000 x\r\n\r\n",
                Err(ProbeParseError::BadStatusLine),
            ),
            (
                b"OPTIONS sip:x SIP/2.0\r\n\r\n",
                Err(ProbeParseError::BadStatusLine),
            ),
            (b"SIP/2.0 200 OK\r\n", Err(ProbeParseError::Unterminated)),
            (b"SIP/2.0 \xff\xfe\r\n\r\n", Err(ProbeParseError::NotText)),
            (b"", Err(ProbeParseError::Unterminated)),
        ];
        for (input, want) in cases {
            let got = parse_response(input).map(|r| (r.code, r.branch, r.call_id));
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn framing() {
        let cases: &[(&[u8], Framed)] = &[
            (OK, Ok(Some(OK.len()))),
            (&OK[..OK.len() - 1], Ok(None)),
            (b"SIP/2.0 200 OK\r\nl: 0\r\n\r\nSIP/2.0", Ok(Some(24))),
            (b"\r\n\r\nSIP", Ok(Some(4))),
            (
                b"SIP/2.0 200 OK\r\n\r\n",
                Err(ProbeParseError::BadContentLength),
            ),
            (
                b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n",
                Err(ProbeParseError::BadContentLength),
            ),
            (
                b"SIP/2.0 200 OK\r\nContent-Length: 99999\r\n\r\n",
                Err(ProbeParseError::TooLarge),
            ),
            (b"SIP/2.0 200 OK\r\nVia: x", Ok(None)),
        ];
        for (input, want) in cases {
            assert_eq!(
                &frame_len(input),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            frame_len(&[b'a'; MAX_RESPONSE + 1]),
            Err(ProbeParseError::TooLarge)
        );
    }
}
