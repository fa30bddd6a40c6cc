//! Steps 6 and 7 of the request pipeline: the edits that make the forwarded
//! copy. Our Via on top (sent-by: this worker's internal address, branch per
//! §16.11), `received`/`rport` on the client's Via (RFC 3581), Max-Forwards,
//! the sanitised Route set, and the flow: a Path with a signed flow token on
//! REGISTER (RFC 3327, RFC 5626 §5.2), or two Record-Routes on a
//! dialog-creating request, the internal face above the outer face.
//!
//! ```text
//! RFC 3581 §4: ... the server MUST insert a "received" parameter containing
//!   the source IP address ... [and] set the value of the "rport" parameter
//!   to the source port of the request.
//! RFC 5626 §5.1: ... the Path header field value ... contains a flow token
//!   ... and the "ob" parameter.
//! ```

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use arrayvec::ArrayString;
use bytes::Bytes;
use sipedge_shared::flow_token::{sign_params, FlowToken, Transport};
use sipedge_shared::sip::{Checked, Editor, HeaderName, Message, Method};

use super::loop_guard::{MaxForwardsEdit, DEFAULT_MAX_FORWARDS};
use super::route::{RouteDecision, P_FLOW, P_PROXY, P_SIG};
use super::Core;
use crate::branch::Branch;
use crate::flow::{FlowId, FlowTransport};

/// What the forwarded copy is built from.
#[derive(Debug)]
pub struct Ctx<'a, 'm> {
    /// The request as received.
    pub msg: &'m Message,
    /// Route sanitising's decision.
    pub routes: &'a RouteDecision<'m>,
    /// Max-Forwards edit.
    pub mf: MaxForwardsEdit,
    /// Our branch.
    pub branch: Branch,
    /// The flow it came in on.
    pub flow: FlowId,
    /// The proxy it goes to (pinned by our Record-Route).
    pub proxy_id: Option<&'a str>,
    /// The headers `check_request` parsed, when the caller has them.
    pub checked: Option<&'a Checked<'m>>,
}

fn transport(t: FlowTransport) -> Transport {
    match t {
        FlowTransport::Udp => Transport::Udp,
        FlowTransport::Tcp => Transport::Tcp,
        FlowTransport::Tls => Transport::Tls,
    }
}

/// The flow token naming `flow` on this LB.
pub fn flow_token(core: &Core, flow: &FlowId) -> Option<String> {
    let s = &core.shared.settings;
    let key = s.flow_keys.first()?;
    let conn = if flow.transport == FlowTransport::Udp {
        0
    } else {
        flow.conn
    };
    let listener = u8::try_from(flow.listener).ok();
    FlowToken::new(
        s.lb_id,
        transport(flow.transport),
        conn,
        flow.peer,
        listener,
    )
    .ok()
    .map(|t| t.encode(key))
}

/// True for requests that create a dialog (RFC 3261 §12, RFC 6665, RFC 3515)
/// when sent outside one.
pub fn creates_dialog(msg: &Message) -> bool {
    is_dialog_method(msg) && msg.to().is_ok_and(|t| t.tag().is_none())
}

fn is_dialog_method(msg: &Message) -> bool {
    matches!(
        msg.method(),
        Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
    )
}

/// [`creates_dialog`] with To already parsed.
fn creates_dialog_checked(msg: &Message, c: &Checked<'_>) -> bool {
    is_dialog_method(msg) && c.to.tag().is_none()
}

/// A signed Record-Route value for `host` (the face it names).
pub fn record_route(
    core: &Core,
    host: &str,
    token: &str,
    proxy: &str,
    transport: Option<&str>,
) -> String {
    let key = match core.shared.settings.flow_keys.first() {
        Some(k) => k,
        None => return String::new(),
    };
    let sig = sign_params(key, &[host.as_bytes(), token.as_bytes(), proxy.as_bytes()]);
    let mut v = String::with_capacity(96 + token.len());
    let _ = write!(v, "<sip:{host};lr");
    if let Some(t) = transport {
        let _ = write!(v, ";transport={t}");
    }
    let _ = write!(v, ";{P_FLOW}={token};{P_PROXY}={proxy};{P_SIG}={sig}>");
    v
}

/// Signed Record-Route pairs (inner, outer face) per flow, then per proxy id.
pub type RrCache = HashMap<FlowId, Vec<(String, Arc<str>, Arc<str>)>>;

/// Flows remembered in [`RrCache`] before it is emptied and refilled.
const RR_CACHE_FLOWS: usize = 4096;

/// The two signed Record-Routes for a dialog from `flow` pinned to `proxy`.
///
/// They depend only on the flow, the proxy and the (fixed) key, so a worker
/// keeps them: three HMACs per dialog-creating request become a lookup for
/// every further call on the same flow (a trunk, or one UDP client).
fn record_routes(core: &Core, flow: &FlowId, proxy: &str) -> Result<(Arc<str>, Arc<str>), String> {
    let mut cache = core.rr_cache.borrow_mut();
    if let Some(hit) = cache
        .get(flow)
        .and_then(|v| v.iter().find(|(p, _, _)| p == proxy))
    {
        return Ok((Arc::clone(&hit.1), Arc::clone(&hit.2)));
    }
    let token = flow_token(core, flow).ok_or("no flow key")?;
    let s = &core.shared.settings;
    let inner: Arc<str> = record_route(core, &s.internal.to_string(), &token, proxy, None).into();
    let outer: Arc<str> = record_route(
        core,
        &s.advertise,
        &token,
        proxy,
        flow.transport.uri_param(),
    )
    .into();
    if cache.len() >= RR_CACHE_FLOWS && !cache.contains_key(flow) {
        cache.clear(); // Bounded: closed connections' entries go too.
    }
    cache.entry(*flow).or_default().push((
        proxy.to_string(),
        Arc::clone(&inner),
        Arc::clone(&outer),
    ));
    Ok((inner, outer))
}

/// Builds the forwarded copy in one pass.
pub fn build(core: &Core, ctx: &Ctx<'_, '_>) -> Result<Bytes, String> {
    let msg = ctx.msg;
    let mut e = Editor::new(msg);
    // The values are formatted on the stack: this runs for every request.
    let mut via = ArrayString::<192>::new();
    write!(via, "SIP/2.0/UDP {};branch={}", core.sent_by, ctx.branch)
        .map_err(|_| "our Via does not fit")?;
    let vidx = msg.find(HeaderName::Via).ok_or("missing Via")?;
    let top = match ctx.checked {
        Some(c) => c.top_via,
        None => msg.top_via().map_err(|e| e.reason())?,
    };
    let peer = ctx.flow.peer;
    let mut ip = ArrayString::<64>::new();
    write!(ip, "{}", peer.ip()).map_err(|_| "address does not fit")?;
    if top.host_str.trim_start_matches('[').trim_end_matches(']') != ip.as_str() {
        e.set_via_param(vidx, "received", Some(&ip));
    }
    let mut port = ArrayString::<8>::new();
    if top.rport == Some(None) {
        write!(port, "{}", peer.port()).map_err(|_| "port does not fit")?;
        e.set_via_param(vidx, "rport", Some(&port));
    }
    e.insert_top(HeaderName::Via, &via);
    let mut mf_value = ArrayString::<4>::new();
    match ctx.mf {
        MaxForwardsEdit::Insert => e.insert_top(HeaderName::MaxForwards, DEFAULT_MAX_FORWARDS),
        MaxForwardsEdit::Replace(idx, v) => {
            write!(mf_value, "{v}").map_err(|_| "Max-Forwards does not fit")?;
            e.replace_value(idx, &mf_value);
        }
    }
    let mut joined = String::new();
    for (idx, keep) in &ctx.routes.rewrites {
        if keep.is_empty() {
            e.remove_header(*idx);
        } else {
            joined.clear();
            joined.push_str(&keep.join(", "));
            e.replace_value(*idx, &joined);
        }
    }
    let method = msg.method();
    if method == Some(Method::Register) {
        let token = flow_token(core, &ctx.flow).ok_or("no flow key")?;
        let path = format!("<sip:{token}@{};lr;ob>", core.shared.settings.internal);
        e.insert_top(HeaderName::Path, &path);
    } else if ctx
        .checked
        .map_or_else(|| creates_dialog(msg), |c| creates_dialog_checked(msg, c))
    {
        if let Some(proxy) = ctx.proxy_id {
            let (inner, outer) = record_routes(core, &ctx.flow, proxy)?;
            e.insert_top(HeaderName::RecordRoute, &inner);
            e.insert_top(HeaderName::RecordRoute, &outer);
        }
    }
    Ok(e.finish())
}
