//! Console page speed (issue 6): signs in to a control plane's console like a browser (CSRF cookie, form post,
//! session cookie) and times every main page over one keep-alive connection on loopback, after warm-up. The
//! figures are client-side wall time on loopback, an upper bound of the server's time per page; `bench/run`
//! seeds the database with 1 million usage records first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct ConsoleConfig {
    pub cp: SocketAddr,
    pub email: String,
    pub password: String,
    /// Timed requests per page (after 2 warm-up requests).
    pub runs: usize,
    /// A team with usage, for the team page and the filtered explorer.
    pub team_id: i64,
    pub model_id: i64,
    pub provider_id: i64,
    /// How many usage records the database holds, for the report.
    pub records: u64,
}

struct Browser {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { addr, sender, cookies: BTreeMap::new() })
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<String>) -> anyhow::Result<(StatusCode, String)> {
        let mut req = Request::builder().method(method).uri(path).header(HOST, self.addr.to_string());
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, jar.join("; "));
        }
        if form.is_some() {
            req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        self.sender.ready().await?;
        let res = self.sender.send_request(req.body(Full::new(Bytes::from(form.unwrap_or_default())))?).await?;
        for value in res.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn login(&mut self, email: &str, password: &str) -> anyhow::Result<()> {
        let (_, form) = self.send(Method::GET, "/console/login", None).await?;
        let marker = "name=\"csrf\" value=\"";
        let start = form.find(marker).context("no CSRF field on the login form")? + marker.len();
        let csrf = &form[start..start + form[start..].find('"').context("unterminated CSRF value")?];
        let body = format!("csrf={}&email={}&password={}", enc(csrf), enc(email), enc(password));
        let (status, page) = self.send(Method::POST, "/console/login", Some(body)).await?;
        if status != StatusCode::SEE_OTHER {
            bail!("login answered {status}: {}", &page[..page.len().min(300)]);
        }
        Ok(())
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(cfg: &ConsoleConfig) -> anyhow::Result<String> {
    let mut browser = Browser::open(cfg.cp).await?;
    browser.login(&cfg.email, &cfg.password).await?;
    let t = cfg.team_id;
    // The last 7 days (the control plane reports in UTC here): explorer totals from the rollups of whole days.
    let today = chrono::Utc::now().date_naive();
    let week = format!("from={}&to={today}", today - chrono::Duration::days(6));
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/console".into()),
        ("teams list", "/console/teams".into()),
        ("teams search", "/console/teams?q=team+1".into()),
        ("team detail", format!("/console/teams/{t}")),
        ("usage explorer (all)", "/console/usage".into()),
        ("usage explorer (team)", format!("/console/usage?team_id={t}")),
        ("usage explorer (all, 7 days)", format!("/console/usage?{week}")),
        ("usage explorer (team, model, 7 days)", format!("/console/usage?team_id={t}&model=gpt-4o&{week}")),
        ("models", "/console/models".into()),
        ("model editor", format!("/console/models/{}", cfg.model_id)),
        ("providers", "/console/providers".into()),
        ("provider editor", format!("/console/providers/{}", cfg.provider_id)),
        ("nodes", "/console/nodes".into()),
        ("users", "/console/users".into()),
        ("audit log", "/console/audit".into()),
        ("account", "/console/account".into()),
    ];
    let mut out = String::new();
    writeln!(
        out,
        "{} usage records in Postgres; {} timed requests per page after 2 warm-up requests, one \
        signed-in operator, one keep-alive connection on loopback (client wall time ≥ server time).",
        cfg.records, cfg.runs
    )?;
    writeln!(out)?;
    writeln!(out, "| page | path | p50 | p95 | max | bytes | ≤ 50 ms |")?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---|")?;
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(cfg.runs);
        let mut size = 0;
        for i in 0..cfg.runs + 2 {
            let started = Instant::now();
            let (status, body) = browser.send(Method::GET, path, None).await?;
            let took = started.elapsed();
            if status != StatusCode::OK {
                bail!("GET {path} answered {status}: {}", &body[..body.len().min(300)]);
            }
            size = body.len();
            if i >= 2 {
                times.push(took);
            }
        }
        times.sort();
        let p95 = quantile(&times, 0.95);
        let verdict = if p95 <= Duration::from_millis(50) { "yes" } else { "**no**" };
        writeln!(
            out,
            "| {name} | `{path}` | {} | {} | {} | {size} | {verdict} |",
            ms(quantile(&times, 0.5)),
            ms(p95),
            ms(times.last().copied().unwrap_or_default())
        )?;
    }
    Ok(out)
}
