//! The bundled example: a tiny HTTP server on port 80 that answers one request from itself
//! and exits. Recorded with `cargo xtask demo`, its minimal set is exactly NET_BIND_SERVICE.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(80);
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("tiny-server: listening on port {port}");
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    });
    let (mut conn, _) = listener.accept()?;
    let mut buf = [0u8; 512];
    let _ = conn.read(&mut buf)?;
    conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nhello\n")?;
    drop(conn);
    let reply = client.join().expect("client thread")?;
    println!("tiny-server: served {:?}", reply.lines().next().unwrap_or(""));
    Ok(())
}
