//! End-to-end tests of sipedge-lb's TLS listener (a test CA and server
//! certificate made with rcgen, a tokio-rustls client trusting only that CA)
//! and of an IPv6 (`[::1]`) UDP listener.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use sipedge_shared::flow_token::{FlowKey, FlowToken, Transport};
use sipedge_shared::sip::{FrameEvent, HeaderName, Limits, Message, StreamFramer};
use sipedge_tests::lb_harness::{
    recv_final, request, Answer, LbOptions, TestLb, TestProxy, TEST_FLOW_KEY,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(5);

/// A test CA (DER) and a server certificate for `localhost`/127.0.0.1 signed
/// by it, written as PEM files in `dir`.
fn make_pki(
    dir: &std::path::Path,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    [std::path::PathBuf; 2],
) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sipedge test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

    let mut srv = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    srv.distinguished_name
        .push(DnType::CommonName, "sipedge-lb test");
    let srv_key = KeyPair::generate().expect("server key");
    let srv_cert = srv
        .signed_by(&srv_key, &ca_cert, &ca_key)
        .expect("server certificate");

    let cert = dir.join("lb.crt");
    let key = dir.join("lb.key");
    std::fs::write(&cert, srv_cert.pem()).expect("write cert");
    std::fs::write(&key, srv_key.serialize_pem()).expect("write key");
    (ca_cert.der().clone(), [cert, key])
}

fn client_config(ca: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA accepted as a root");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn next_message(
    stream: &mut (impl AsyncRead + Unpin),
    framer: &mut StreamFramer,
) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match framer.next() {
            Some(Ok(FrameEvent::Message(m))) => return Some(m),
            Some(Ok(_)) => continue,
            Some(Err(_)) => return None,
            None => {}
        }
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        framer.feed(&buf[..n]);
    }
}

/// The flow token in a Path value `<sip:TOKEN@host:port;lr;ob>`.
fn path_token(path: &str) -> Option<&str> {
    let rest = path.split_once("sip:")?.1;
    Some(rest.split_once('@')?.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_register_with_a_test_ca_gets_200_and_a_tls_flow_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, [cert, key]) = make_pki(dir.path());
    let proxy = TestProxy::start("p1", Answer::Ok).await.expect("proxy");
    let mut opts = LbOptions::new(vec![(proxy.id.clone(), proxy.addr)]);
    opts.tls = Some((cert, key));
    let lb = TestLb::start(opts).await.expect("lb");

    let tcp = TcpStream::connect(lb.addrs.tls[0]).await.expect("connect");
    let me = tcp.local_addr().expect("bound");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)));
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake: the LB's certificate chains to the test CA");

    let reg = request("REGISTER", "sip:example.com", me, "regtls", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TLS");
    tls.write_all(reg.as_bytes()).await.expect("write");
    let mut framer = StreamFramer::new(Limits::default());
    let ok = loop {
        let m = next_message(&mut tls, &mut framer)
            .await
            .expect("an answer to the REGISTER over TLS");
        if m.status().is_some_and(|s| s >= 200) {
            break m;
        }
    };
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.call_id().ok(), Some("regtls"));

    let fwd = proxy
        .received
        .lock()
        .expect("lock")
        .iter()
        .find(|m| m.call_id().ok() == Some("regtls"))
        .cloned()
        .expect("REGISTER reached the proxy");
    let path = fwd
        .header(HeaderName::Path)
        .expect("Path added")
        .to_string();
    assert!(path.contains(";lr;ob>"), "{path}");
    assert!(path.contains(&lb.addrs.internal.to_string()), "{path}");
    let keys = [FlowKey::from_secret(TEST_FLOW_KEY).expect("key")];
    let token = FlowToken::decode(path_token(&path).expect("token in Path"), &keys)
        .expect("the token verifies under the LB's key");
    assert_eq!(token.transport(), Transport::Tls, "{path}");
    assert_eq!(token.peer(), me, "the token names our connection");
    lb.stop().await.expect("lb stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_udp_listener_relays_an_options() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let client = match UdpSocket::bind(SocketAddr::new(v6, 0)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIP ipv6_udp_listener: cannot bind [::1] here ({e})");
            return;
        }
    };
    let ca = client.local_addr().expect("bound");
    // The proxies stay on IPv4: external IPv6, internal IPv4, as deployed.
    let proxy = TestProxy::start("p1", Answer::Ok).await.expect("proxy");
    let mut opts = LbOptions::new(vec![(proxy.id.clone(), proxy.addr)]);
    opts.external = v6;
    let lb = TestLb::start(opts).await.expect("lb on [::1]");
    let target = lb.addrs.udp[0];
    assert!(target.is_ipv6(), "{target}");

    let req = request("OPTIONS", "sip:carol@example.com", ca, "v6opt", "");
    client
        .send_to(req.as_bytes(), target)
        .await
        .expect("send over IPv6");
    let resp = recv_final(&client, WAIT)
        .await
        .expect("a final answer over IPv6");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.call_id().ok(), Some("v6opt"));

    let fwd = proxy
        .received
        .lock()
        .expect("lock")
        .iter()
        .find(|m| m.call_id().ok() == Some("v6opt"))
        .cloned()
        .expect("OPTIONS reached the IPv4 proxy");
    let vias: Vec<String> = fwd.values(HeaderName::Via).map(str::to_string).collect();
    let client_via = vias
        .iter()
        .find(|v| v.contains("v6optx"))
        .expect("client Via kept");
    // RFC 3581: rport filled in; no `received`, as the sent-by host is the source.
    assert!(
        client_via.contains(&format!("rport={}", ca.port())),
        "{client_via}"
    );
    lb.stop().await.expect("lb stops");
}
