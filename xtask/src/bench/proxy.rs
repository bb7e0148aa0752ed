//! A counting TCP proxy on loopback, put between a client and its server for both systems:
//! bytes each way (everything on the wire: request/status lines, headers, bodies) and HTTP
//! requests (parsed from the client's stream: Content-Length and chunked bodies).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use anyhow::Result;

#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    requests: AtomicU64,
    connections: AtomicU64,
}

/// What crossed the proxy since the last `take`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire {
    pub up: u64,
    pub down: u64,
    pub requests: u64,
    pub connections: u64,
}

impl Wire {
    pub fn total(&self) -> u64 {
        self.up + self.down
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (c1, c2) = (c.clone(), c.clone());
                let (cr, sw) = (client.try_clone(), server.try_clone());
                let (Ok(cr), Ok(sw)) = (cr, sw) else { continue };
                thread::spawn(move || pump(cr, sw, &c1, true));
                thread::spawn(move || pump(server, client, &c2, false));
            }
        });
        Ok(Proxy {
            addr,
            counters,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counts since the last call, and starts again from zero.
    pub fn take(&self) -> Wire {
        let c = &self.counters;
        Wire {
            up: c.up.swap(0, Ordering::Relaxed),
            down: c.down.swap(0, Ordering::Relaxed),
            requests: c.requests.swap(0, Ordering::Relaxed),
            connections: c.connections.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, c: &Counters, upstream: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut parser = RequestParser::default();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upstream {
            c.up.fetch_add(n as u64, Ordering::Relaxed);
            let done = parser.feed(&buf[..n]);
            c.requests.fetch_add(done, Ordering::Relaxed);
        } else {
            c.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailer,
}

/// Finds request boundaries in an HTTP/1.1 client stream.
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
    line: Vec<u8>,
}

impl RequestParser {
    /// Consumes bytes; returns how many requests were completed by them.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            match self.state {
                State::Body(n) | State::ChunkData(n) => {
                    let k = (n as usize).min(data.len());
                    data = &data[k..];
                    let left = n - k as u64;
                    self.state = match (&self.state, left) {
                        (State::Body(_), 0) => {
                            done += 1;
                            State::Head
                        }
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkEnd,
                        (_, l) => State::ChunkData(l),
                    };
                }
                _ => {
                    // Line-oriented states: collect up to the next '\n'.
                    let (line_end, rest) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => (Some(i), &data[i + 1..]),
                        None => (None, &data[data.len()..]),
                    };
                    match line_end {
                        None => {
                            self.line.extend_from_slice(data);
                            data = rest;
                            continue;
                        }
                        Some(i) => self.line.extend_from_slice(&data[..=i]),
                    }
                    data = rest;
                    if let Some(r) = self.line_done() {
                        done += r;
                    }
                }
            }
        }
        done
    }

    /// Handles one complete line (or, in `Head`, checks for the end of the head).
    fn line_done(&mut self) -> Option<u64> {
        match self.state {
            State::Head => {
                if !self.line.ends_with(b"\r\n\r\n") && !self.line.ends_with(b"\n\n") {
                    if self.line == b"\r\n" {
                        self.line.clear(); // stray CRLF between requests
                    }
                    return None; // keep collecting the head
                }
                let head = String::from_utf8_lossy(&self.line).to_ascii_lowercase();
                self.line.clear();
                let mut length = 0u64;
                let mut chunked = false;
                for l in head.lines() {
                    if let Some(v) = l.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = l.strip_prefix("transfer-encoding:") {
                        chunked = v.contains("chunked");
                    }
                }
                self.state = if chunked {
                    State::ChunkSize
                } else if length > 0 {
                    State::Body(length)
                } else {
                    return Some(1);
                };
                None
            }
            State::ChunkSize => {
                let s = String::from_utf8_lossy(&self.line).to_string();
                self.line.clear();
                let hex = s.trim().split(';').next().unwrap_or("0").to_string();
                let n = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
                self.state = if n == 0 {
                    State::Trailer
                } else {
                    State::ChunkData(n)
                };
                None
            }
            State::ChunkEnd => {
                self.line.clear();
                self.state = State::ChunkSize;
                None
            }
            State::Trailer => {
                let end = self.line == b"\r\n" || self.line == b"\n";
                self.line.clear();
                if end {
                    self.state = State::Head;
                    Some(1)
                } else {
                    None
                }
            }
            State::Body(_) | State::ChunkData(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestParser;

    #[test]
    fn counts_requests_in_any_split() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n\
PUT /z HTTP/1.1\r\ncontent-length: 12\r\n\r\nGET / HTTP/1";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let mut p = RequestParser::default();
            let n: u64 = stream.chunks(step).map(|c| p.feed(c)).sum();
            assert_eq!(n, 4, "split every {step} bytes");
        }
        let mut p = RequestParser::default();
        assert_eq!(p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    }
}
