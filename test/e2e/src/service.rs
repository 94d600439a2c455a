//! A Service stand-in: the seed's apiserver reaches the OSC webhook of both controller replicas through one
//! loopback port, as it would reach them through their Service; a connection goes to the first replica that accepts
//! it, so a killed replica is skipped as kube-proxy skips a pod that is gone.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Listens on a free loopback port and forwards every connection to the first of `backends` that accepts it.
pub struct Service {
    pub port: u16,
}

impl Service {
    pub async fn start(backends: Vec<u16>, shutdown: CancellationToken) -> std::io::Result<Service> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                let backends = backends.clone();
                tokio::spawn(async move {
                    for backend in backends {
                        if let Ok(mut outbound) =
                            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, backend))).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Service { port })
    }
}
