use super::compression::{HeaderCompressor, HeaderDecompressor, dictionary};
use super::frame::{FLAG_FIN, Frame, FrameReader, FrameWriter, Headers};
use super::*;
use bytes::Bytes;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::default();
    for (n, v) in pairs {
        h.add(n, v);
    }
    h
}

#[test]
fn dictionary_is_the_specifications() {
    let d = dictionary();
    assert_eq!(d.len(), 1423);
    assert_eq!(&d[..11], b"\0\0\0\x07options");
    assert!(d.ends_with(b"utf-,*,enq=0."));
    use sha2::Digest;
    let sum = sha2::Sha256::digest(d);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    );
}

/// Two header blocks compressed on one zlib stream by the C zlib (Python's
/// `zlib.compressobj(..., zdict=SPDY dictionary)` with a sync flush after each).
#[test]
fn decompresses_blocks_made_by_c_zlib() {
    let mut d = HeaderDecompressor::new();
    let first = d
        .decompress(&hex(
            "78f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff",
        ))
        .unwrap();
    assert_eq!(
        Headers::decode(&first).unwrap(),
        headers(&[("streamtype", "error")])
    );
    let second = d
        .decompress(&hex(
            "02a54748d15c04ce0516061606409ab308129599a024ce6880a119540e2502000000ffff",
        ))
        .unwrap();
    assert_eq!(
        Headers::decode(&second).unwrap(),
        headers(&[("port", "8080"), ("requestid", "0"), ("streamtype", "data")])
    );
}

#[test]
fn compressor_names_the_dictionary_and_round_trips() {
    let mut c = HeaderCompressor::new();
    let mut d = HeaderDecompressor::new();
    let first = c.compress(&headers(&[("a", "b")]).encode()).unwrap();
    // zlib header with FDICT set, then the dictionary's Adler-32.
    assert_eq!(first[1] & 0x20, 0x20);
    assert_eq!(&first[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    assert!(first.ends_with(&[0, 0, 0xff, 0xff]), "sync flush");
    assert_eq!(
        Headers::decode(&d.decompress(&first).unwrap()).unwrap(),
        headers(&[("a", "b")])
    );
    for i in 0..50 {
        let h = headers(&[
            ("streamtype", "stdout"),
            ("x-long", &"v".repeat(i * 100)),
            ("multi", "1"),
            ("multi", "2"),
        ]);
        let block = c.compress(&h.encode()).unwrap();
        assert_eq!(Headers::decode(&d.decompress(&block).unwrap()).unwrap(), h);
    }
}

#[test]
fn corrupt_header_block_is_an_error() {
    let mut d = HeaderDecompressor::new();
    assert!(d.decompress(&[0x78, 0x9c, 0xff, 0xff, 0xff]).is_err());
}

#[test]
fn control_frames_have_the_specified_layout() {
    let mut w = FrameWriter::new();
    let mut out = Vec::new();
    w.encode(&Frame::Ping(1), &mut out).unwrap();
    assert_eq!(out, hex("800300060000000400000001"));
    out.clear();
    w.encode(
        &Frame::RstStream {
            stream_id: 5,
            status: 3,
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("80030003000000080000000500000003"));
    out.clear();
    w.encode(
        &Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("80030007000000080000000700000000"));
    out.clear();
    w.encode(
        &Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hi"),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, hex("00000003010000026869"));
}

#[tokio::test]
async fn frames_round_trip_through_reader_and_writer() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: headers(&[("streamtype", "error")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::default(),
        },
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from(vec![7u8; 70_000]),
        },
        Frame::Headers {
            stream_id: 1,
            flags: FLAG_FIN,
            headers: headers(&[("k", "v")]),
        },
        Frame::Settings(vec![(0, 7, 65536)]),
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 100,
        },
        Frame::Ping(2),
        Frame::RstStream {
            stream_id: 1,
            status: 5,
        },
        Frame::GoAway {
            last_good_stream_id: 1,
            status: 0,
        },
    ];
    let mut w = FrameWriter::new();
    let mut wire = Vec::new();
    for f in &frames {
        w.encode(f, &mut wire).unwrap();
    }
    let mut r = FrameReader::new(&wire[..]);
    for f in &frames {
        assert_eq!(&r.read().await.unwrap().unwrap(), f);
    }
    assert!(r.read().await.unwrap().is_none());
}

#[tokio::test]
async fn wrong_version_is_refused() {
    let wire = hex("800200060000000400000001");
    let mut r = FrameReader::new(&wire[..]);
    assert!(matches!(r.read().await, Err(SpdyError::Protocol(_))));
}

/// A client on the other end of a duplex pipe, speaking frames.
struct Client {
    r: FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    enc: FrameWriter,
}

impl Client {
    async fn send(&mut self, f: Frame) {
        use tokio::io::AsyncWriteExt;
        let mut buf = Vec::new();
        self.enc.encode(&f, &mut buf).unwrap();
        self.w.write_all(&buf).await.unwrap();
    }
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.r.read())
            .await
            .expect("a frame in time")
            .unwrap()
    }
}

fn pair() -> (Connection, Client) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    (
        Connection::server(ar, aw),
        Client {
            r: FrameReader::new(br),
            w: bw,
            enc: FrameWriter::new(),
        },
    )
}

fn syn(id: u32, kind: &str) -> Frame {
    Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        flags: 0,
        headers: headers(&[("streamtype", kind)]),
    }
}

#[tokio::test]
async fn connection_accepts_streams_carries_data_and_closes() {
    let (mut conn, mut client) = pair();
    client.send(syn(1, "stdin")).await;
    let incoming = conn.accept().await.unwrap();
    assert_eq!(incoming.headers.get("streamtype"), Some("stdin"));
    let mut stream = incoming.accept().await.unwrap();
    assert_eq!(
        client.next().await,
        Some(Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::default()
        })
    );
    client
        .send(Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from_static(b"abc"),
        })
        .await;
    assert_eq!(stream.recv().await.as_deref(), Some(&b"abc"[..]));
    client
        .send(Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await;
    assert_eq!(stream.recv().await, None, "FIN ends the inbound side");

    // Our side still writes after the peer's half-close, split in 32 KiB frames.
    stream.writer.send(&vec![1u8; 40_000]).await.unwrap();
    stream.writer.close().await;
    let mut got = 0;
    loop {
        match client.next().await.unwrap() {
            Frame::Data { flags, data, .. } => {
                got += data.len();
                assert!(data.len() <= 32 * 1024);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 40_000);

    // Client pings (odd ids) are echoed.
    client.send(Frame::Ping(3)).await;
    assert_eq!(client.next().await, Some(Frame::Ping(3)));

    conn.close().await;
    assert!(matches!(client.next().await, Some(Frame::GoAway { .. })));
    assert_eq!(client.next().await, None, "then the byte stream ends");
}

#[tokio::test]
async fn reset_and_invalid_streams() {
    let (mut conn, mut client) = pair();
    client.send(syn(3, "data")).await;
    let stream = conn.accept().await.unwrap().accept().await.unwrap();
    client.next().await.unwrap(); // SYN_REPLY
    client
        .send(Frame::RstStream {
            stream_id: 3,
            status: 5,
        })
        .await;
    // An even (server-side) id, and an id going backwards, are protocol errors.
    client.send(syn(4, "data")).await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 4,
            status: 1
        })
    );
    assert!(stream.writer.is_reset());
    assert!(matches!(
        stream.writer.send(b"x").await,
        Err(SpdyError::Reset)
    ));
    client.send(syn(1, "data")).await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: 1
        })
    );
    // A refused stream is reset.
    client.send(syn(5, "bogus")).await;
    conn.accept().await.unwrap().refuse().await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 5,
            status: 3
        })
    );
    // The peer going away ends `accept`.
    drop(client);
    assert!(conn.accept().await.is_none());
}
