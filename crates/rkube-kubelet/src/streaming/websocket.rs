//! WebSocket upgrades and what Kubernetes carries on them: the channel
//! subprotocols (`v5.channel.k8s.io` and older: one byte of channel number before
//! each message's data, or a digit and base64 in the text variants), and SPDY
//! tunnelled in binary messages (`SPDY/3.1+portforward.k8s.io`).

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// Exec/attach: v4 plus the close signal (channel 255).
pub const V5: &str = "v5.channel.k8s.io";
/// Exec/attach: a JSON `Status` on the error channel.
pub const V4: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
/// Exec/attach before v4: error text on the error channel.
pub const V1: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";
/// Port-forward: SPDY/3.1 frames carried in binary messages (kubectl 1.31+).
pub const SPDY_PORTFORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The channel protocols exec and attach accept, best first ("" is no protocol).
pub const CHANNEL_PROTOCOLS: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64, ""];

/// Whether a request asks for a WebSocket (`Upgrade: websocket`, `Connection: upgrade`).
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && connection_has_upgrade(headers)
}

/// Whether `Connection` lists `upgrade`.
pub fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The subprotocols a client offers, in its order of preference.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first offered protocol the server supports (no offer means "").
pub fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    if offered.is_empty() {
        return supported.contains(&"").then(String::new);
    }
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
}

/// The 101 answer to a WebSocket request, choosing `protocol`.
pub fn accept_response<B: Default>(
    headers: &HeaderMap,
    protocol: &str,
) -> Result<Response<B>, String> {
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err("unsupported WebSocket version (13 is required)".into());
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(B::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| e.to_string())?,
    );
    if !protocol.is_empty() {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
        );
    }
    Ok(resp)
}

/// Wraps an upgraded connection as the server end of a WebSocket.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> WebSocketStream<S> {
    WebSocketStream::from_raw_socket(io, Role::Server, None).await
}

/// A channel subprotocol: how channel numbers and data sit in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelProtocol {
    /// 1 (`channel.k8s.io`), 4 or 5.
    pub version: u8,
    /// Text messages: a digit, then base64.
    pub base64: bool,
}

/// A decoded client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Data for a channel.
    Data(u8, Bytes),
    /// The client ends the connection.
    Close,
    /// Nothing for the session (ping, pong, empty message).
    Skip,
}

impl ChannelProtocol {
    pub fn parse(name: &str) -> Option<ChannelProtocol> {
        let (version, base64) = match name {
            V5 => (5, false),
            V4 => (4, false),
            V4_BASE64 => (4, true),
            V1 | "" => (1, false),
            V1_BASE64 => (1, true),
            _ => return None,
        };
        Some(ChannelProtocol { version, base64 })
    }

    /// A message carrying `data` on `channel`.
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            s.push((b'0' + channel) as char);
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::text(s)
        } else {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(channel);
            v.extend_from_slice(data);
            Message::binary(v)
        }
    }

    /// What a client message means; invalid base64 is an error.
    pub fn decode(&self, msg: Message) -> Result<Incoming, String> {
        let (channel, data) = match msg {
            Message::Close(_) => return Ok(Incoming::Close),
            Message::Binary(b) if !self.base64 => match b.first() {
                Some(&c) => (c, b.slice(1..)),
                None => return Ok(Incoming::Skip),
            },
            Message::Text(t) if self.base64 => {
                let t = t.as_str();
                let Some(c) = t.bytes().next() else {
                    return Ok(Incoming::Skip);
                };
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t[1..])
                    .map_err(|e| {
                        format!("invalid base64 on channel {}: {e}", c.wrapping_sub(b'0'))
                    })?;
                (c.wrapping_sub(b'0'), Bytes::from(data))
            }
            Message::Binary(_) | Message::Text(_) => {
                return Err("message type does not match the subprotocol".into());
            }
            _ => return Ok(Incoming::Skip),
        };
        Ok(Incoming::Data(channel, data))
    }
}

/// The normal closing message.
pub fn close_message() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Turns a WebSocket whose binary messages carry a byte stream (the SPDY tunnel)
/// into a plain byte stream: the returned end reads what the client sends and
/// writes messages to it. Two tasks copy between them until either side ends.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                // Pings are answered by tungstenite; text is not part of the tunnel.
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(close_message()).await;
        let _ = sink.close().await;
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_framing() {
        let v5 = ChannelProtocol::parse(V5).unwrap();
        assert_eq!(v5.encode(1, b"hi"), Message::binary(vec![1u8, b'h', b'i']));
        assert_eq!(
            v5.decode(Message::binary(vec![0u8, b'x'])).unwrap(),
            Incoming::Data(0, Bytes::from_static(b"x"))
        );
        assert_eq!(
            v5.decode(Message::binary(vec![255u8, 0])).unwrap(),
            Incoming::Data(255, Bytes::from_static(&[0]))
        );
        assert_eq!(
            v5.decode(Message::binary(Vec::<u8>::new())).unwrap(),
            Incoming::Skip
        );
        assert!(v5.decode(Message::text("0eA==")).is_err());

        // "foo\n" on stdin and "\n" on stdout, as in the protocol's documentation.
        let b64 = ChannelProtocol::parse(V1_BASE64).unwrap();
        assert_eq!(
            b64.decode(Message::text("0Zm9vCg==")).unwrap(),
            Incoming::Data(0, Bytes::from_static(b"foo\n"))
        );
        assert_eq!(b64.encode(1, b"\n"), Message::text("1Cg=="));
        assert!(b64.decode(Message::text("0!!!")).is_err());
        assert_eq!(
            ChannelProtocol::parse(V4_BASE64),
            Some(ChannelProtocol {
                version: 4,
                base64: true
            })
        );
        assert_eq!(ChannelProtocol::parse("v9.channel.k8s.io"), None);
    }

    #[test]
    fn negotiation_prefers_the_clients_order() {
        let offered = vec!["v4.channel.k8s.io".to_string(), V5.to_string()];
        assert_eq!(negotiate(&offered, CHANNEL_PROTOCOLS).as_deref(), Some(V4));
        assert_eq!(negotiate(&[], CHANNEL_PROTOCOLS).as_deref(), Some(""));
        assert_eq!(negotiate(&["x".to_string()], CHANNEL_PROTOCOLS), None);
        assert_eq!(negotiate(&[], &[SPDY_PORTFORWARD_TUNNEL]), None);
    }

    #[test]
    fn accept_key_of_rfc_6455() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        h.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(is_websocket_request(&h));
        let r: Response<()> = accept_response(&h, V5).unwrap();
        assert_eq!(r.status(), 101);
        assert_eq!(
            r.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_PROTOCOL], V5);
    }
}
