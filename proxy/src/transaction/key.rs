//! Transaction matching keys (RFC 3261 §17.1.3 for responses, §17.2.3 for
//! requests), built from small `&str` views so no parser is needed here.
//!
//! ```text
//! RFC 3261 §17.1.3: A response matches a client transaction under two
//! conditions: 1. If the response has the same value of the branch parameter
//! in the top Via header field as the branch parameter in the top Via header
//! field of the request that created the transaction. 2. If the method
//! parameter in the CSeq header field matches the method of the request that
//! created the transaction.
//! RFC 3261 §17.2.3: [if the branch begins with the magic cookie
//! "z9hG4bK"] the request matches a transaction if: 1. the branch parameter
//! in the request is equal to the one in the top Via header field of the
//! request that created the transaction, and 2. the sent-by value in the top
//! Via of the request is equal to the one in the request that created the
//! transaction, and 3. the method of the request matches the one that
//! created the transaction, except for ACK, where the method of the request
//! that created the transaction is INVITE.
//! RFC 3261 §9.2: [a CANCEL is matched to the transaction being cancelled
//! with the §17.2.3 procedures] but the method is not considered.
//! ```
//!
//! Requests whose branch lacks the magic cookie (RFC 2543 peers) are refused
//! with [`KeyError::NoMagicCookie`]; the caller handles them statelessly.
//! Branch values are compared exactly (§7.3.1 would allow case-insensitive
//! parameter values; a peer is expected to echo the branch verbatim), the
//! sent-by host ignoring case.

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Why no key can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The top Via has no (or an empty) branch parameter.
    #[error("top Via has no branch")]
    NoBranch,
    /// The branch does not start with `z9hG4bK` (an RFC 2543 element); the
    /// RFC 2543 fallback matching is not implemented.
    #[error("branch `{0}` lacks the z9hG4bK magic cookie")]
    NoMagicCookie(String),
    /// The method (request line or CSeq) is empty.
    #[error("empty method")]
    NoMethod,
}

/// What a response contributes to matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseIds<'a> {
    /// Branch parameter of the top Via.
    pub branch: &'a str,
    /// Method of the CSeq header.
    pub cseq_method: &'a str,
}

/// What a request contributes to matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIds<'a> {
    /// Request-line method.
    pub method: &'a str,
    /// Branch parameter of the top Via.
    pub branch: &'a str,
    /// Host of the top Via's sent-by.
    pub sent_by_host: &'a str,
    /// Port of the top Via's sent-by, as written (absent stays absent).
    pub sent_by_port: Option<u16>,
}

/// Key of a client transaction: branch + method.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    branch: String,
    method: String,
}

impl ClientKey {
    /// The key for a request we send with this top-Via `branch`.
    pub fn new(branch: &str, method: &str) -> Result<Self, KeyError> {
        check(branch, method)?;
        Ok(ClientKey {
            branch: branch.to_owned(),
            method: method.to_owned(),
        })
    }

    /// The key a received response matches (§17.1.3).
    pub fn from_response(ids: &ResponseIds<'_>) -> Result<Self, KeyError> {
        Self::new(ids.branch, ids.cseq_method)
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// Key of a server transaction: branch + sent-by + method (ACK → INVITE).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey {
    branch: String,
    /// Lower-cased: host names compare case-insensitively.
    sent_by_host: String,
    sent_by_port: Option<u16>,
    method: String,
}

impl ServerKey {
    /// The key a received request matches (§17.2.3). An ACK yields the key
    /// of its INVITE; a CANCEL yields its own key (see
    /// [`ServerKey::cancel_target`]).
    pub fn from_request(ids: &RequestIds<'_>) -> Result<Self, KeyError> {
        check(ids.branch, ids.method)?;
        let method = if ids.method == "ACK" {
            "INVITE"
        } else {
            ids.method
        };
        Ok(ServerKey {
            branch: ids.branch.to_owned(),
            sent_by_host: ids.sent_by_host.to_ascii_lowercase(),
            sent_by_port: ids.sent_by_port,
            method: method.to_owned(),
        })
    }

    /// For a CANCEL's key, the key of the INVITE transaction it cancels
    /// (§9.2: same matching, method not considered). `None` for other
    /// methods.
    pub fn cancel_target(&self) -> Option<ServerKey> {
        (self.method == "CANCEL").then(|| ServerKey {
            method: "INVITE".to_owned(),
            ..self.clone()
        })
    }

    /// The method of the transaction (INVITE for an ACK).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }
}

fn check(branch: &str, method: &str) -> Result<(), KeyError> {
    if branch.is_empty() {
        return Err(KeyError::NoBranch);
    }
    // The cookie is compared leniently: some stacks lower-case parameters.
    let has_cookie = branch
        .get(..MAGIC_COOKIE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MAGIC_COOKIE));
    if !has_cookie || branch.len() == MAGIC_COOKIE.len() {
        return Err(KeyError::NoMagicCookie(branch.to_owned()));
    }
    if method.is_empty() {
        return Err(KeyError::NoMethod);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        method: &'a str,
        branch: &'a str,
        host: &'a str,
        port: Option<u16>,
    ) -> RequestIds<'a> {
        RequestIds {
            method,
            branch,
            sent_by_host: host,
            sent_by_port: port,
        }
    }

    #[test]
    fn server_matching_table() {
        let invite =
            ServerKey::from_request(&req("INVITE", "z9hG4bKabc", "pc33.example.com", Some(5060)))
                .expect("valid");
        // (request, matches the INVITE transaction?)
        let table = [
            (
                req("INVITE", "z9hG4bKabc", "pc33.example.com", Some(5060)),
                true,
            ),
            (
                req("ACK", "z9hG4bKabc", "PC33.Example.COM", Some(5060)),
                true,
            ),
            (
                req("ACK", "z9hG4bKabd", "pc33.example.com", Some(5060)),
                false,
            ),
            (
                req("INVITE", "z9hG4bKabc", "pc33.example.com", Some(5070)),
                false,
            ),
            (req("INVITE", "z9hG4bKabc", "pc33.example.com", None), false),
            (
                req("INVITE", "z9hG4bKabc", "other.example.com", Some(5060)),
                false,
            ),
            (
                req("CANCEL", "z9hG4bKabc", "pc33.example.com", Some(5060)),
                false,
            ),
            (
                req("BYE", "z9hG4bKabc", "pc33.example.com", Some(5060)),
                false,
            ),
        ];
        for (ids, want) in table {
            let k = ServerKey::from_request(&ids).expect("valid");
            assert_eq!(k == invite, want, "{ids:?}");
        }
    }

    #[test]
    fn cancel_is_its_own_transaction_but_targets_the_invite() {
        let ids = req("CANCEL", "z9hG4bKabc", "h", Some(5060));
        let cancel = ServerKey::from_request(&ids).expect("valid");
        let invite =
            ServerKey::from_request(&req("INVITE", "z9hG4bKabc", "h", Some(5060))).expect("valid");
        assert_ne!(cancel, invite);
        assert_eq!(cancel.cancel_target(), Some(invite.clone()));
        assert_eq!(invite.cancel_target(), None);
    }

    #[test]
    fn client_matching_table() {
        let sent = ClientKey::new("z9hG4bK776asdhds", "INVITE").expect("valid");
        let table = [
            (
                ResponseIds {
                    branch: "z9hG4bK776asdhds",
                    cseq_method: "INVITE",
                },
                true,
            ),
            (
                ResponseIds {
                    branch: "z9hG4bK776asdhds",
                    cseq_method: "CANCEL",
                },
                false,
            ),
            (
                ResponseIds {
                    branch: "z9hG4bK776asdhdX",
                    cseq_method: "INVITE",
                },
                false,
            ),
        ];
        for (ids, want) in table {
            assert_eq!(
                ClientKey::from_response(&ids).expect("valid") == sent,
                want,
                "{ids:?}"
            );
        }
    }

    #[test]
    fn bad_inputs() {
        let table = [
            (req("INVITE", "", "h", None), KeyError::NoBranch),
            (
                req("INVITE", "abc", "h", None),
                KeyError::NoMagicCookie("abc".into()),
            ),
            (
                req("INVITE", "z9hG4bK", "h", None),
                KeyError::NoMagicCookie("z9hG4bK".into()),
            ),
            (
                req("INVITE", "z9h", "h", None),
                KeyError::NoMagicCookie("z9h".into()),
            ),
            (req("", "z9hG4bKx", "h", None), KeyError::NoMethod),
        ];
        for (ids, want) in table {
            assert_eq!(ServerKey::from_request(&ids), Err(want), "{ids:?}");
        }
        // Multi-byte input must not panic on the cookie slice.
        assert!(ServerKey::from_request(&req("INVITE", "z9hG4bé", "h", None)).is_err());
    }
}
