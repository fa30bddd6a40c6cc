//! The proxy's admin routes on the shared admin server: the peer-to-peer
//! replica and lookup endpoints (bearer token `peers.token`; 404 when no
//! peers are configured). Bodies: see [`super::wire`].
//!
//! ```text
//! PUT /v1/replicas/{aor}   200 {"held":N}  400 malformed  401 token  403 unknown origin
//! GET /v1/bindings/{aor}   200 {"proxy":"p1","bindings":[…]}  400 bad AOR  401 token
//! ```

use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use sipedge_shared::admin::{check_bearer, AdminRequest, AdminResponse, AdminRoutes, BoxFuture};

use super::wire::{decode_aor, ReplicaBody};
use super::ReplicaError;
use crate::server::Core;

/// The proxy's admin routes.
#[derive(Debug)]
pub struct ProxyAdmin {
    core: Arc<Core>,
}

impl ProxyAdmin {
    /// Routes over `core`'s registrar and churn state.
    pub fn new(core: Arc<Core>) -> Self {
        ProxyAdmin { core }
    }

    fn route(&self, req: &AdminRequest) -> AdminResponse {
        let churn = &self.core.churn;
        let (kind, seg) = if let Some(s) = req.path.strip_prefix("/v1/replicas/") {
            ("replicas", s)
        } else if let Some(s) = req.path.strip_prefix("/v1/bindings/") {
            ("bindings", s)
        } else {
            return AdminResponse::not_found();
        };
        if !churn.enabled() {
            return AdminResponse::not_found();
        }
        if !check_bearer(&req.headers, churn.token()) {
            return AdminResponse::error(StatusCode::UNAUTHORIZED, "missing or bad bearer token");
        }
        let Some(aor) = decode_aor(seg) else {
            return AdminResponse::error(StatusCode::BAD_REQUEST, "bad AOR in the path");
        };
        let now = Instant::now();
        match (kind, &req.method) {
            ("replicas", &Method::PUT) => {
                let body: ReplicaBody = match serde_json::from_slice(&req.body) {
                    Ok(b) => b,
                    Err(e) => {
                        return AdminResponse::error(
                            StatusCode::BAD_REQUEST,
                            &format!("malformed JSON: {e}"),
                        )
                    }
                };
                match churn.accept_replica(&aor, &body, now) {
                    Ok(held) => {
                        AdminResponse::json(StatusCode::OK, &serde_json::json!({ "held": held }))
                    }
                    Err(e @ ReplicaError::UnknownOrigin(_)) => {
                        AdminResponse::error(StatusCode::FORBIDDEN, &e.to_string())
                    }
                    Err(e @ ReplicaError::Wire(_)) => {
                        AdminResponse::error(StatusCode::BAD_REQUEST, &e.to_string())
                    }
                }
            }
            ("bindings", &Method::GET) => {
                let local = self.core.registrar.location().lookup(&aor, now);
                AdminResponse::json(StatusCode::OK, &churn.lookup_answer(&aor, &local, now))
            }
            _ => AdminResponse::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }
}

impl AdminRoutes for ProxyAdmin {
    fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
        Box::pin(async move { self.route(&req) })
    }
}
