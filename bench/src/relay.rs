//! The floor for any proxy on this machine: a byte relay that parses nothing — accept, connect upstream, copy
//! both ways (`tokio::io::copy_bidirectional`). What it adds over direct-to-mock is the cost of one more process
//! hop (two more socket exchanges, two more wake-ups); what the gateway adds over the relay is the gateway's own.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Serves until the process is killed. Prints `relay listening on http://ADDR` once bound.
pub async fn run(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("relay listening on http://{}", listener.local_addr()?);
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
