//! Step 5 of the request pipeline: choose the proxy. The key is the address
//! of record, normalised: the To URI for REGISTER (its Request-URI has no
//! user part), the Request-URI otherwise. It is ranked over the live set
//! with rendezvous hashing (`sipedge_shared::hash`), so every LB picks the
//! same proxy and a proxy's death moves only its own keys. In-dialog
//! requests go where our signed Record-Route says, while that proxy lives.

use std::net::SocketAddr;

use sipedge_shared::hash;
use sipedge_shared::sip::{Checked, Message, Method, ParseError, Uri};

use crate::proxy_set::RoutingSnapshot;

/// The normalised address of record the request is hashed on.
pub fn routing_key(msg: &Message) -> Result<String, ParseError> {
    if msg.method() == Some(Method::Register) {
        return Ok(msg.to()?.uri.aor_key());
    }
    let ruri = msg.request_uri().ok_or(ParseError::BadStartLine)?;
    Ok(Uri::parse(ruri)?.aor_key())
}

/// [`routing_key`] from the headers `check_request` already parsed, into a
/// reused buffer.
pub fn routing_key_checked(msg: &Message, c: &Checked<'_>, out: &mut String) {
    if msg.method() == Some(Method::Register) {
        c.to.uri.write_aor_key(out);
    } else {
        c.request_uri.write_aor_key(out);
    }
}

/// A chosen proxy: its rank for the key (0 best) and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Position in the ranking (failover moves to `rank + 1`).
    pub rank: usize,
    /// Where to send.
    pub addr: SocketAddr,
    /// Index of the proxy in the snapshot it was chosen from.
    pub index: usize,
}

impl Choice {
    /// The chosen proxy's id in `snapshot` (the one it was chosen from).
    pub fn id<'s>(&self, snapshot: &'s RoutingSnapshot) -> Option<&'s str> {
        snapshot.proxies.get(self.index).map(|p| p.id.as_str())
    }
}

/// The proxy at position `rank` for `key`, if the set has that many.
pub fn nth(snapshot: &RoutingSnapshot, key: &str, rank: usize) -> Option<Choice> {
    hash::rank(key, &snapshot.proxies)
        .nth(rank)
        .map(|i| Choice {
            rank,
            addr: snapshot.proxies[i].addr,
            index: i,
        })
}

/// The first choice: the pinned proxy when it is live, else the best ranked.
pub fn first(snapshot: &RoutingSnapshot, key: &str, pinned: Option<&str>) -> Option<Choice> {
    if let Some(id) = pinned {
        if let Some(index) = snapshot.proxies.iter().position(|p| p.id == id) {
            // Failover from a pinned proxy continues in hash order.
            return Some(Choice {
                rank: usize::MAX,
                addr: snapshot.proxies[index].addr,
                index,
            });
        }
    }
    nth(snapshot, key, 0)
}

/// The next candidate after `rank` (a pinned first choice goes to rank 0,
/// skipping the pinned proxy if it ranks there).
pub fn next(
    snapshot: &RoutingSnapshot,
    key: &str,
    rank: usize,
    tried: SocketAddr,
) -> Option<Choice> {
    let start = if rank == usize::MAX { 0 } else { rank + 1 };
    // One ranking pass, not one per candidate rank.
    hash::rank(key, &snapshot.proxies)
        .enumerate()
        .skip(start)
        .map(|(rank, i)| Choice {
            rank,
            addr: snapshot.proxies[i].addr,
            index: i,
        })
        .find(|c| c.addr != tried)
}
