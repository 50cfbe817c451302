//! The kubelet's streaming endpoint (port 10250): container logs, exec, attach and
//! port-forward, in the protocols kubectl speaks through the API server.
//!
//! * [`server`]: HTTPS and routes; [`auth`]: who may call (client certificates,
//!   bearer tokens, authorization on `nodes/proxy` through the API server).
//! * [`logs`]: CRI log files read with tail/since/follow.
//! * [`remotecommand`]: exec and attach sessions over WebSocket channels or SPDY.
//! * [`portforward`]: forwarded connections over SPDY (or SPDY tunnelled in a
//!   WebSocket), dialed in the pod's network namespace ([`netns`]).
//! * [`spdy`], [`websocket`], [`upgrade`]: the wire protocols.
//!
//! The node agent starts it with its [`PodLookup`](crate::lookup::PodLookup), its
//! runtime and its API client (which reviews tokens and authorizes requests):
//!
//! ```ignore
//! let tls = ServingTls { cert_pem, key_pem, client_ca_pem };
//! let config = StreamingConfig::new(address, node_name, tls).webhook(client);
//! let server = StreamingServer::bind(config, lookup, runtime).await?;
//! let port = server.local_addr().port(); // for status.daemonEndpoints
//! tokio::spawn(server.run());
//! ```

pub mod auth;
pub mod logs;
pub mod netns;
pub mod portforward;
pub mod query;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tls;
pub mod upgrade;
pub mod websocket;

pub use auth::{AuthMode, CacheTtls};
pub use server::{
    API_SERVER_CLIENT_USER, DEFAULT_PORT, ServingTls, StreamingConfig, StreamingServer,
};

/// Why the streaming server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The certificates or key could not be used.
    #[error("kubelet serving TLS: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("listening on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}
