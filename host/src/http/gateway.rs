//! What the gateway serves from: one value shared by every connection and
//! by the admin API.

use std::sync::Arc;

use crate::capability::budget::Budget;
use crate::deploy::Deployer;
use crate::engine::runtime::Runtime;
use crate::http::auth::Authenticator;
use crate::http::throttle::Throttle;
use crate::streams::backlog::Backlog;

/// What the gateway serves from.
pub struct Gateway {
    pub rt: Arc<Runtime>,
    pub deployer: Arc<Deployer>,
    pub admin_token: Option<String>,
    pub auth: Arc<Authenticator>,
    /// Clients that sent wrong admin tokens lately.
    pub admin_failures: Throttle,
    /// `/metrics` wants the admin token.
    pub metrics_admin_only: bool,
    /// The admin API has a listener of its own (`admin_listen`).
    pub admin_apart: bool,
    /// Connections open at once, across listeners; past it a new one is
    /// answered 503 and closed.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// One warning about refused connections per minute, at most.
    pub refusal_log: Budget,
    /// How far the event pipeline is behind: past its bound, writes wait.
    pub backlog: Arc<Backlog>,
    /// Given when the host begins to stop: long-lived answers (the
    /// console's live stream) end then.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Surface {
    /// The public API (and the admin API, unless it has its own listener).
    Public,
    /// `admin_listen`: the admin API only.
    Admin,
}
