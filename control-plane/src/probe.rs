//! `switchyard-control-plane probe URL`: a tiny HTTP/1.0 GET for container health checks, so the runtime image
//! needs no shell and no curl. Succeeds on a 2xx answer within the timeout; plain `http://host:port/path` only.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not an http://host:port/path URL")]
    Url(String),
    #[error("no answer within {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("connection failed")]
    Io(#[from] std::io::Error),
    #[error("answered `{0}`")]
    Status(String),
}

/// `(host:port, path)` of a plain-HTTP URL.
pub fn split_url(url: &str) -> Result<(&str, &str), ProbeError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() || !authority.contains(':') {
        return Err(ProbeError::Url(url.to_owned()));
    }
    Ok((authority, path))
}

pub async fn run(url: &str) -> Result<(), ProbeError> {
    let (authority, path) = split_url(url)?;
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes()).await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, ProbeError>(head)
    };
    let head = tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| ProbeError::Timeout)??;
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().trim().to_owned();
    match line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') && code.len() == 3 => Ok(()),
        _ => Err(ProbeError::Status(line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:8081/readyz").unwrap(), ("127.0.0.1:8081", "/readyz"));
        assert_eq!(split_url("http://node:8080").unwrap(), ("node:8080", "/"));
        assert!(split_url("https://x:1/").is_err());
        assert!(split_url("http://nohost/").is_err());
    }
}
