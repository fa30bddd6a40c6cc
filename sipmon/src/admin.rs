//! sipmon's admin routes on the shared admin server (`shared::admin`, which
//! serves `/metrics`, `/healthz` and `/readyz`): here only `GET /v1/status`.

use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use sipedge_shared::admin::{AdminRequest, AdminResponse, AdminRoutes, BoxFuture};

use crate::monitor::Monitor;

/// `GET /v1/status`: the status document `sipmon status` renders.
#[derive(Debug)]
pub struct StatusRoutes {
    /// The running monitor.
    pub monitor: Arc<Monitor>,
}

impl StatusRoutes {
    fn route(&self, req: &AdminRequest) -> AdminResponse {
        match (req.path.as_str(), &req.method) {
            ("/v1/status", &Method::GET) => {
                AdminResponse::json(StatusCode::OK, &self.monitor.status(Instant::now()))
            }
            ("/v1/status", _) => {
                AdminResponse::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => AdminResponse::not_found(),
        }
    }
}

impl AdminRoutes for StatusRoutes {
    fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
        let resp = self.route(&req);
        Box::pin(async move { resp })
    }
}
