//! Which proxy holds the replica of an AOR: the best-ranked proxy other than
//! us, ranking every configured proxy (us and the peers) exactly as the LBs do.
//!
//! The LBs hash the address of record (`Uri::aor_key`: the To URI of a
//! REGISTER, the Request-URI otherwise, user unescaped, host lowercased) onto
//! the proxy ids with `sipedge_shared::hash`. The registrar's AOR
//! (`user@domain`, domain lowercased) is that same string for every local
//! domain, so the proxy the LBs fail over to when the home proxy dies is the
//! one this function names, and it already holds the user's bindings.

use sipedge_shared::hash;

/// The id of the proxy that should hold `aor`'s replica: the first of
/// [`ranking`] that is not us. `None` without peers.
///
/// That is the best-ranked peer: a rendezvous score depends only on the key
/// and the one id (ties on id, then position), so leaving our own id out of
/// the ranking does not change the order of the others, and no list is built.
pub fn replica_target<'a>(aor: &str, peer_ids: &'a [String]) -> Option<&'a str> {
    hash::best(aor, peer_ids).map(|i| peer_ids[i].as_str())
}

/// Every configured proxy id for `aor`, best first (ours included): what an
/// LB with the whole tier live would try, in order.
pub fn ranking<'a>(aor: &str, own_id: &'a str, peer_ids: &'a [String]) -> Vec<&'a str> {
    let mut all: Vec<&str> = Vec::with_capacity(peer_ids.len() + 1);
    all.push(own_id);
    all.extend(peer_ids.iter().map(String::as_str));
    hash::rank(aor, &all).map(|i| all[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_target_is_the_next_ranked_proxy_for_every_home() {
        let tier = ["p1", "p2", "p3"];
        for n in 0..200 {
            let aor = format!("user{n}@sipedge.local");
            for own in tier {
                let peers = ids(&tier
                    .iter()
                    .copied()
                    .filter(|p| *p != own)
                    .collect::<Vec<_>>());
                let order = ranking(&aor, own, &peers);
                let want = order.iter().copied().find(|p| *p != own);
                assert_eq!(replica_target(&aor, &peers), want, "{aor} at {own}");
                // The home's replica lands where an LB fails over to.
                if order[0] == own {
                    assert_eq!(want, Some(order[1]), "{aor}");
                }
            }
        }
    }

    #[test]
    fn frozen_examples() {
        // (aor, own id, peers, want): pinned so a hash change shows up here
        // as well as in the LB's frozen table.
        let peers23 = ids(&["p2", "p3"]);
        let peers13 = ids(&["p1", "p3"]);
        let peers12 = ids(&["p1", "p2"]);
        let table: Vec<(&str, &str, &[String], Option<&str>)> = vec![
            ("carol@sipedge.local", "p2", &peers13, Some("p1")),
            ("bob@sipedge.local", "p1", &peers23, Some("p2")),
            ("bob@sipedge.local", "p2", &peers13, Some("p1")),
            ("alice@sipedge.local", "p3", &peers12, Some("p1")),
            ("bob@sipedge.local", "p1", &[], None),
        ];
        for (aor, own, peers, want) in table {
            assert_eq!(replica_target(aor, peers), want, "{aor} at {own}");
        }
        // The LB ranks on the same key with the same function.
        let tier = ["p1", "p2", "p3"];
        for aor in [
            "alice@sipedge.local",
            "bob@sipedge.local",
            "carol@sipedge.local",
        ] {
            let lb: Vec<&str> = hash::rank(aor, &tier).map(|i| tier[i]).collect();
            assert_eq!(ranking(aor, "p1", &peers23), lb, "{aor}");
        }
    }
}
