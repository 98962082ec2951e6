//! An HTTP/2 upstream (h2c, prior knowledge) that answers every request with the header
//! fields it received, one `name: value` per line: what the proxy forwards to HTTP/2 services
//! such as gRPC ones. It runs on its own thread with the `h2` crate, on a real socket.

use std::net::TcpListener;

/// A running h2c echo service; it stops with the test process.
pub struct H2Echo {
    pub port: u16,
}

impl H2Echo {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the h2c echo service");
        let port = listener.local_addr().expect("local address").port();
        listener.set_nonblocking(true).expect("non-blocking");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket));
                }
            });
        });
        Self { port }
    }
}

async fn serve(socket: tokio::net::TcpStream) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let mut body = String::new();
        for (name, value) in req.headers() {
            body.push_str(&format!(
                "{}: {}\n",
                name,
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .header("x-served-by", "h2echo")
            .body(())
            .expect("response");
        if let Ok(mut send) = respond.send_response(response, false) {
            let _ = send.send_data(bytes::Bytes::from(body), true);
        }
    }
}
