//! REGISTER glue: local-domain check, digest authentication, the parsed
//! [`RegisterRequest`] for the [`Registrar`](crate::registrar::Registrar),
//! and the 200/423/400/503 answer with every binding and the Path echoed.
//!
//! ```text
//! RFC 3261 §10.3 step 1: The registrar inspects the Request-URI to determine
//! whether it has access to bindings for the domain identified in the
//! Request-URI. If not [...] it MUST [...] respond 403? [we answer 403].
//! RFC 3261 §10.3 step 8: The response MUST contain Contact header field
//! values enumerating all current bindings. Each Contact value MUST feature
//! an "expires" parameter indicating its expiration interval.
//! RFC 3327 §5.3: a registrar supporting this extension [...] copies the
//! Path header field values into the 200 (OK) response.
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use sipedge_shared::sip::{Contact, HeaderName, Message, Uri};

use super::{authn, Core, Source};
use crate::registrar::{ContactInput, GrantedBinding, RegisterOutcome, RegisterRequest, Q};
use crate::transaction::ServerKey;

/// The Contact value of the 200 for one binding.
pub fn contact_value(g: &GrantedBinding) -> String {
    let b = &g.binding;
    let mut v = format!("<{}>;expires={}", b.contact, g.expires);
    if let Some(q) = b.q {
        let pm = q.per_mille();
        let _ = write!(v, ";q={}.{:03}", pm / 1000, pm % 1000);
    }
    if let Some(i) = &b.instance {
        let _ = write!(v, ";+sip.instance=\"<{i}>\"");
    }
    if let Some(r) = b.reg_id {
        let _ = write!(v, ";reg-id={r}");
    }
    v
}

/// Parses the REGISTER into the registrar's input; `Err` is a 400 reason.
pub fn register_request(
    msg: &Message,
    aor: String,
    source: std::net::SocketAddr,
) -> Result<RegisterRequest, String> {
    let mut contacts = Vec::new();
    let mut star = false;
    match msg.contacts() {
        Err(_) => return Err("Bad Contact".into()),
        Ok(Contact::Star) => star = true,
        Ok(Contact::List(list)) => {
            for c in list {
                let c = c.map_err(|_| "Bad Contact".to_string())?;
                let expires = c.expires().map_err(|_| "Bad Contact expires".to_string())?;
                let q = match c.q().map_err(|_| "Bad Contact q".to_string())? {
                    Some(pm) => Some(Q::from_per_mille(pm).ok_or("Bad Contact q")?),
                    None => None,
                };
                contacts.push(ContactInput {
                    uri: c.uri.as_str().to_owned(),
                    expires,
                    q,
                    instance: c.sip_instance().map(str::to_owned),
                    reg_id: c.reg_id(),
                });
            }
        }
    }
    let header_expires = match msg.header(HeaderName::Expires) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|_| "Bad Expires".to_string())?,
        ),
    };
    let cseq = msg.cseq().map_err(|_| "Bad CSeq".to_string())?;
    let path = msg
        .paths()
        .map(|p| p.map(|na| na.uri.as_str().to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "Bad Path".to_string())?;
    Ok(RegisterRequest {
        aor,
        contacts,
        star,
        header_expires,
        call_id: msg.call_id().unwrap_or("").to_owned(),
        cseq: cseq.seq,
        path,
        source,
        user_agent: msg.header(HeaderName::UserAgent).map(|v| v.into_owned()),
        now: Instant::now(),
    })
}

/// Handles a REGISTER (no Route beyond ours).
pub async fn handle(core: &Core, msg: &Message, src: &Source, key: &ServerKey) {
    let ruri_host = msg
        .request_uri()
        .and_then(|r| Uri::parse(r).ok())
        .map(|u| u.host_str.to_ascii_lowercase())
        .unwrap_or_default();
    let Ok(to) = msg.to() else {
        core.reply(key, 400, "Bad To", &[]);
        return;
    };
    let domain = to.uri.host_str.to_ascii_lowercase();
    if !core.is_local_domain(&ruri_host) || !core.is_local_domain(&domain) {
        core.reply(key, 403, "Not A Local Domain", &[]);
        return;
    }
    let Some(user) = core.authenticate(msg, src, key, &domain, false).await else {
        return;
    };
    let to_user = to.uri.user_unescaped();
    if to_user != user {
        core.env.metrics.auth_forbidden.increment(1);
        core.reply(key, 403, "Not Allowed To Register This AOR", &[]);
        return;
    }
    let client = authn::client_addr(msg, src.peer);
    let req = match register_request(msg, format!("{to_user}@{domain}"), client) {
        Ok(r) => r,
        Err(reason) => {
            core.reply(key, 400, &reason, &[]);
            return;
        }
    };
    let outcome = core.registrar.register(&req, &mut rand::thread_rng());
    match outcome {
        RegisterOutcome::Ok { bindings, path } => {
            // A change (not a query): copy the AOR's new set to the next-ranked
            // proxy; queued, never delays the 200.
            if core.churn.enabled() && (req.star || !req.contacts.is_empty()) {
                let set = bindings.iter().map(|g| g.binding.clone()).collect();
                core.churn.replicate(&req.aor, set);
            }
            let contacts: Vec<String> = bindings.iter().map(contact_value).collect();
            let paths: Vec<String> = path.iter().map(|p| format!("<{p}>")).collect();
            let mut extra: Vec<(&str, &str)> =
                contacts.iter().map(|c| ("Contact", c.as_str())).collect();
            // RFC 3327 §5.3 echoes when the UA supports path; behind our LB
            // the Path is the LB's, so we echo whenever one is present.
            extra.extend(paths.iter().map(|p| ("Path", p.as_str())));
            if !paths.is_empty() {
                extra.push(("Supported", "path, outbound"));
            }
            core.env.metrics.registers_ok.increment(1);
            core.env
                .metrics
                .registrations
                .set(core.registrar.location().count() as f64);
            core.reply(key, 200, "OK", &extra);
        }
        RegisterOutcome::IntervalTooBrief { min_expires } => {
            core.reply(
                key,
                423,
                "Interval Too Brief",
                &[("Min-Expires", &min_expires.to_string())],
            );
        }
        RegisterOutcome::BadRequest(reason) => core.reply(key, 400, &reason, &[]),
        RegisterOutcome::Overloaded { retry_after } => {
            core.env.metrics.overload.increment(1);
            core.reply(
                key,
                503,
                "Service Unavailable",
                &[("Retry-After", &retry_after.to_string())],
            );
        }
        RegisterOutcome::ServerError(e) => {
            core.reply(key, 500, &e.to_string(), &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sipedge_shared::sip::Limits;

    fn parse(s: String) -> Message {
        Message::parse_datagram(Bytes::from(s), &Limits::default()).expect("parses")
    }

    fn reg(extra: &str) -> Message {
        parse(format!(
            "REGISTER sip:sipedge.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKa\r\n\
             Path: <sip:TOK@10.0.0.1:5080;lr;ob>\r\nFrom: <sip:alice@sipedge.local>;tag=1\r\n\
             To: <sip:alice@sipedge.local>\r\nCall-ID: c\r\nCSeq: 3 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        ))
    }

    /// (contacts, star, Expires header) or the 400 reason.
    type Want = Result<(usize, bool, Option<u32>), &'static str>;

    #[test]
    fn parses_register() {
        let src = "198.51.100.7:4000".parse().expect("literal");
        let table: &[(&str, Want)] = &[
            (
                "Contact: <sip:alice@192.0.2.1:5060>;expires=60;q=0.5\r\n",
                Ok((1, false, None)),
            ),
            ("Contact: *\r\nExpires: 0\r\n", Ok((0, true, Some(0)))),
            (
                "Contact: <sip:a@h>, <sip:b@h>\r\nExpires: 300\r\n",
                Ok((2, false, Some(300))),
            ),
            ("", Ok((0, false, None))),
            (
                "Contact: <sip:a@h>;expires=x\r\n",
                Err("Bad Contact expires"),
            ),
            (
                "Contact: <sip:a@h>\r\nExpires: soon\r\n",
                Err("Bad Expires"),
            ),
            ("Contact: <sip:a@h>;q=2\r\n", Err("Bad Contact q")),
        ];
        for (extra, want) in table {
            let got = register_request(&reg(extra), "alice@sipedge.local".into(), src)
                .map(|r| (r.contacts.len(), r.star, r.header_expires));
            assert_eq!(got, want.map_err(str::to_owned), "{extra}");
        }
        let r = register_request(
            &reg("Contact: <sip:alice@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n"),
            "alice@sipedge.local".into(),
            src,
        )
        .expect("valid");
        assert_eq!(r.path, ["sip:TOK@10.0.0.1:5080;lr;ob"]);
        assert_eq!(r.cseq, 3);
        assert_eq!(r.contacts[0].instance.as_deref(), Some("urn:uuid:1"));
        assert_eq!(r.contacts[0].reg_id, Some(1));
        assert_eq!(r.source, src);
    }
}
