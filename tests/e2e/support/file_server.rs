//! A local stand-in for the upstream hosts a deployable build fetches from
//! (Image Factory, Teleport's CDN, snapshot.debian.org): serves fixed bodies
//! by method and path over HTTP, 404 for anything else, and records every
//! request.
//! Tests point `--factory`, `--teleport-cdn` and `--debian-snapshots` at it,
//! so nothing reaches the internet.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

type Routes = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

pub struct FileServer {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
    routes: Routes,
}

impl FileServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::default();
        let (seen, served) = (requests.clone(), routes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or("GET");
                let path = parts.next().unwrap_or("").to_string();
                // GETs are recorded and routed by path, others as `METHOD path`.
                let key = if method == "GET" {
                    path
                } else {
                    format!("{method} {path}")
                };
                seen.lock().unwrap().push(key.clone());
                let body = served.lock().unwrap().get(&key).cloned();
                let (status, body) = match body {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"not found\n".to_vec()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        FileServer {
            url,
            requests,
            routes,
        }
    }

    /// Serves `body` at `path` from now on (for a method other than GET,
    /// `path` is `METHOD /path`).
    pub fn serve(&self, path: impl Into<String>, body: Vec<u8>) -> &Self {
        self.routes.lock().unwrap().insert(path.into(), body);
        self
    }

    /// Every request path so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
