//! The client caps what it reads: an answer body over `max_response_bytes`, announced or
//! streamed without end, fails with `ResponseTooLarge` instead of growing memory. The server
//! is a raw loopback socket (plain HTTP through `ServiceClientOptions::endpoint`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_service::{ErrorKind, RetryOptions, ServiceClient, ServiceClientOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CS: &str = "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=SW9USHViRW11bGF0b3JEZXZlbG9wbWVudE93bmVyMDE=";

/// Serves every connection with `head`, then writes `chunk` until the client hangs up (at most
/// 1 GiB, so the loop ends even if nothing stops it).
async fn server(head: &'static str, chunk: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut sent = 0usize;
                while sent < 1 << 30 {
                    if s.write_all(chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    addr
}

fn client(addr: std::net::SocketAddr) -> ServiceClient {
    let options = ServiceClientOptions::new()
        .endpoint(format!("http://{addr}/").parse().unwrap())
        .max_response_bytes(1024 * 1024)
        .operation_timeout(Duration::from_secs(60))
        .retry(RetryOptions {
            max_retries: 0,
            ..RetryOptions::default()
        });
    ServiceClient::from_connection_string(CS, options).unwrap()
}

#[tokio::test]
async fn an_endless_chunked_body_fails_with_response_too_large() {
    // One 64 KiB chunk per write: a size line, then 65 536 bytes, then CRLF.
    static BODY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut v = b"10000\r\n".to_vec();
        v.extend(std::iter::repeat_n(b'x', 0x10000));
        v.extend_from_slice(b"\r\n");
        v
    });
    let addr = server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        BODY.as_slice(),
    )
    .await;
    let err = client(addr).get_twin("d1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_announced_huge_body_fails_before_it_is_read() {
    let addr = server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 314572800\r\n\r\n",
        &[b'x'; 65536],
    )
    .await;
    let err = client(addr).get_twin("d1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{err:?}");
}
