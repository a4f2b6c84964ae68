//! Shared helpers for integration tests that run the real Python koi-net 2.1.2 (`tests/py/`, installed by
//! `scripts/setup-python.sh`). Each test binary that uses them says `mod support;`.
#![allow(dead_code)]

pub mod nats;
pub mod pynet;
pub mod receiver;

#[allow(unused_imports)]
pub use pynet::{koi_tool, koi_tool_output, koi_tool_text, py_script, python};

/// A bare HTTP server on 127.0.0.1 (a free port, returned): for each request it reads the head and writes back
/// `answer(request line)` — a whole HTTP response — then closes. For tests that need another site or an odd
/// receiver, not a scripted one ([`receiver`]).
pub fn stub_server(answer: impl Fn(&str) -> String + Send + 'static) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = stream.write_all(answer(&line).as_bytes());
        }
    });
    port
}
