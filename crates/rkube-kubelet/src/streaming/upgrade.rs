//! Choosing how a streaming request upgrades: a WebSocket with a subprotocol, or
//! SPDY/3.1 with an `X-Stream-Protocol-Version`, as the kubelet negotiates them.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::websocket;

/// The header carrying SPDY protocol versions, one value each.
pub const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";

/// The transport a request upgraded to, with the negotiated protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket(String),
    Spdy(String),
}

/// What a streaming endpoint supports.
pub struct Supported<'a> {
    pub websocket: &'a [&'a str],
    pub spdy: &'a [&'a str],
    /// The SPDY protocol assumed when the client names none.
    pub spdy_default: &'a str,
}

/// A failed negotiation: what to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: StatusCode,
    /// The SPDY versions the endpoint accepts, when none of the client's matched
    /// (sent back as `X-Accepted-Stream-Protocol-Versions`).
    pub accepted: Vec<String>,
    pub message: String,
}

impl Refusal {
    fn new(code: StatusCode, message: String) -> Refusal {
        Refusal {
            code,
            accepted: Vec::new(),
            message,
        }
    }

    /// The headers of the refusal.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for p in &self.accepted {
            if let Ok(v) = HeaderValue::from_str(p) {
                h.append(ACCEPTED_STREAM_PROTOCOL_VERSIONS, v);
            }
        }
        h
    }
}

fn spdy_requested(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
        && websocket::connection_has_upgrade(headers)
}

/// Negotiates the transport; on success also the headers of the 101 answer
/// (the WebSocket accept key, or the SPDY upgrade and protocol headers).
pub fn negotiate(
    headers: &HeaderMap,
    supported: &Supported<'_>,
) -> Result<(Transport, Response<()>), Refusal> {
    if websocket::is_websocket_request(headers) {
        let offered = websocket::offered_protocols(headers);
        let Some(protocol) = websocket::negotiate(&offered, supported.websocket) else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "requested protocol(s) are not supported: {offered:?}; supports {:?}",
                    supported.websocket
                ),
            ));
        };
        let resp = websocket::accept_response(headers, &protocol)
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?;
        return Ok((Transport::WebSocket(protocol), resp));
    }
    if !spdy_requested(headers) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request".into(),
        ));
    }
    let offered: Vec<String> = headers
        .get_all(STREAM_PROTOCOL_VERSION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    let protocol = if offered.is_empty() {
        supported.spdy_default.to_string()
    } else {
        match offered
            .iter()
            .find(|p| supported.spdy.contains(&p.as_str()))
        {
            Some(p) => p.clone(),
            None => {
                return Err(Refusal {
                    code: StatusCode::FORBIDDEN,
                    accepted: supported.spdy.iter().map(|p| p.to_string()).collect(),
                    message: format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {:?}",
                        supported.spdy
                    ),
                });
            }
        }
    };
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert(STREAM_PROTOCOL_VERSION, v);
    }
    Ok((Transport::Spdy(protocol), resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: Supported<'static> = Supported {
        websocket: websocket::CHANNEL_PROTOCOLS,
        spdy: crate::streaming::remotecommand::spdy::PROTOCOLS,
        spdy_default: "channel.k8s.io",
    };

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn spdy_takes_the_clients_first_supported_version() {
        // What kubectl 1.27 sends.
        let h = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("connection", "Upgrade"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
            ("x-stream-protocol-version", "v2.channel.k8s.io"),
            ("x-stream-protocol-version", "channel.k8s.io"),
        ]);
        let (t, resp) = negotiate(&h, &EXEC).unwrap();
        assert_eq!(t, Transport::Spdy("v4.channel.k8s.io".into()));
        assert_eq!(resp.status(), 101);
        assert_eq!(
            resp.headers()["x-stream-protocol-version"],
            "v4.channel.k8s.io"
        );
        assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
    }

    #[test]
    fn refusals() {
        let h = headers(&[
            ("upgrade", "SPDY/3.1"),
            ("connection", "Upgrade"),
            ("x-stream-protocol-version", "v9.channel.k8s.io"),
        ]);
        let r = negotiate(&h, &EXEC).unwrap_err();
        assert_eq!(r.code, 403);
        assert_eq!(
            r.headers()
                .get_all(ACCEPTED_STREAM_PROTOCOL_VERSIONS)
                .iter()
                .count(),
            5
        );
        assert!(r.message.contains("unable to negotiate protocol"));
        assert_eq!(negotiate(&HeaderMap::new(), &EXEC).unwrap_err().code, 400);
        let ws = headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v9.channel.k8s.io"),
        ]);
        assert_eq!(negotiate(&ws, &EXEC).unwrap_err().code, 403);
    }
}
