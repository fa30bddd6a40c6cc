//! Proxies from DNS SRV (hickory-resolver), re-resolved every `refresh`.
//! A failed resolution keeps the previous answer: DNS trouble must not
//! empty the proxy set.
//!
//! ```text
//! RFC 2782: _Service._Proto.Name TTL Class SRV Priority Weight Port Target
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioAsyncResolver;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::SrvSource;

/// Proxies found under one SRV name: `(id, addr)` with id `target:port`.
pub type SrvTargets = Vec<(String, SocketAddr)>;

/// Why a resolution produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum SrvError {
    /// The SRV query failed (NXDOMAIN, timeout, no records…).
    #[error("SRV lookup of {name}: {source}")]
    Lookup {
        /// The SRV name.
        name: String,
        /// The resolver error.
        source: hickory_resolver::error::ResolveError,
    },
    /// No SRV target resolved to an address.
    #[error("SRV {name}: no target resolved to an address")]
    NoAddresses {
        /// The SRV name.
        name: String,
    },
}

/// The proxy id of an SRV target: `host:port`, without the root dot.
pub fn srv_target_id(target: &str, port: u16) -> String {
    format!(
        "{}:{port}",
        target.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Resolves `name` once: every SRV target with its first address.
pub async fn resolve(resolver: &TokioAsyncResolver, name: &str) -> Result<SrvTargets, SrvError> {
    let lookup = resolver
        .srv_lookup(name)
        .await
        .map_err(|source| SrvError::Lookup {
            name: name.to_string(),
            source,
        })?;
    let mut out = SrvTargets::new();
    for srv in lookup.iter() {
        let target = srv.target().to_utf8();
        let id = srv_target_id(&target, srv.port());
        if out.iter().any(|(i, _)| *i == id) {
            continue;
        }
        match resolver.lookup_ip(srv.target().clone()).await {
            Ok(ips) => {
                if let Some(ip) = ips.iter().next() {
                    out.push((id, SocketAddr::new(ip, srv.port())));
                }
            }
            Err(e) => {
                tracing::warn!(srv = name, %target, error = %e, "SRV target does not resolve")
            }
        }
    }
    if out.is_empty() {
        return Err(SrvError::NoAddresses {
            name: name.to_string(),
        });
    }
    out.sort();
    Ok(out)
}

/// Resolves `source` now and every `refresh`, publishing changes on `tx`.
pub async fn run_srv(
    resolver: TokioAsyncResolver,
    source: SrvSource,
    tx: watch::Sender<SrvTargets>,
    shutdown: CancellationToken,
) {
    loop {
        match resolve(&resolver, &source.name).await {
            Ok(targets) => {
                tx.send_if_modified(|cur| {
                    let changed = *cur != targets;
                    if changed {
                        tracing::info!(srv = %source.name, ?targets, "SRV proxies changed");
                        *cur = targets;
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "keeping the previous SRV answer"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(source.refresh.max(Duration::from_secs(1))) => {}
        }
    }
}

/// Static proxies first; an SRV target whose id is already taken is skipped.
pub fn merge(
    static_targets: &[(String, SocketAddr)],
    srv: &[SrvTargets],
) -> Vec<(String, SocketAddr)> {
    let mut out = static_targets.to_vec();
    for (id, addr) in srv.iter().flatten() {
        if !out.iter().any(|(i, _)| i == id) {
            out.push((id.clone(), *addr));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ids() {
        let cases = [
            ("p1.example.com.", 5060, "p1.example.com:5060"),
            ("P2.Example.COM", 5070, "p2.example.com:5070"),
        ];
        for (t, port, want) in cases {
            assert_eq!(srv_target_id(t, port), want);
        }
    }

    #[test]
    fn merging() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        let st = vec![("p1".to_string(), a)];
        let srv = vec![
            vec![("p1".to_string(), b), ("h:2".to_string(), b)],
            vec![("h:2".to_string(), b)],
        ];
        assert_eq!(
            merge(&st, &srv),
            vec![("p1".to_string(), a), ("h:2".to_string(), b)]
        );
    }
    /// A tiny authoritative DNS server on loopback: `_sip._udp.ok.test` has
    /// two SRV targets (one without an address), everything else NXDOMAIN.
    async fn fake_dns() -> SocketAddr {
        use hickory_proto::op::{Message, MessageType, ResponseCode};
        use hickory_proto::rr::rdata::{A, SRV};
        use hickory_proto::rr::{Name, RData, Record, RecordType};

        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = sock.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(q.op_code())
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true);
                let mut found = false;
                for query in q.queries() {
                    r.add_query(query.clone());
                    let name = query.name().to_ascii().to_ascii_lowercase();
                    let n = |s: &str| Name::from_ascii(s).expect("name");
                    match (query.query_type(), name.as_str()) {
                        (RecordType::SRV, "_sip._udp.ok.test.") => {
                            found = true;
                            for (port, target) in
                                [(5071, "p1.ok.test."), (5072, "nowhere.ok.test.")]
                            {
                                let srv = SRV::new(10, 10, port, n(target));
                                r.add_answer(Record::from_rdata(
                                    query.name().clone(),
                                    60,
                                    RData::SRV(srv),
                                ));
                            }
                        }
                        (RecordType::A, "p1.ok.test.") => {
                            found = true;
                            let a = RData::A(A("127.0.0.9".parse().expect("ip")));
                            r.add_answer(Record::from_rdata(query.name().clone(), 60, a));
                        }
                        _ => {}
                    }
                }
                if !found {
                    r.set_response_code(ResponseCode::NXDomain);
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn resolves_srv_targets() {
        use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
        let dns = fake_dns().await;
        let servers = NameServerConfigGroup::from_ips_clear(&[dns.ip()], dns.port(), true);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(500);
        opts.attempts = 1;
        let resolver =
            TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], servers), opts);
        // (name, expected (id, addr) targets, or None for an error)
        type Want = Option<&'static [(&'static str, &'static str)]>;
        let cases: &[(&str, Want)] = &[
            (
                "_sip._udp.ok.test.",
                Some(&[("p1.ok.test:5071", "127.0.0.9:5071")]),
            ),
            ("_sip._udp.missing.test.", None),
        ];
        for (name, want) in cases {
            let got = resolve(&resolver, name).await;
            match want {
                Some(want) => {
                    let want: SrvTargets = want
                        .iter()
                        .map(|(id, a)| (id.to_string(), a.parse().expect("addr")))
                        .collect();
                    assert_eq!(got.expect(name), want, "{name}");
                }
                None => assert!(got.is_err(), "{name}: {got:?}"),
            }
        }
    }
}
