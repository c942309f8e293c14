//! Upstream cool-downs: after a provider answers 429, its target is left alone for as long as the provider asked
//! (`Retry-After`, or the `x-ratelimit-reset-*` of the exhausted dimension), and routing goes to the next target.
//! The cool-down starts on this node at once and, with Redis, on every node: a key with that TTL, which each node
//! reads at most once per target per [`RECHECK`] (and only while the target is not already cooling here). Without
//! Redis too: the node reports it to the control plane at once (`upstream_status`), which hands it to the other
//! nodes in the answer to their next status report.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{Limiter, lock};

/// How often a node asks Redis whether another node cooled a target down.
pub const RECHECK: Duration = Duration::from_millis(100);
/// A 429 without any hint cools the target down this long.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// Longest cool-down honoured, whatever the provider says.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);

/// One target's cool-down on this node (kept in the target's long-lived health state).
#[derive(Debug, Default)]
pub struct CoolState {
    inner: Mutex<Cool>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cool {
    until: Option<Instant>,
    /// The end of the last cool-down this node started after a 429 it received itself (reported to the control
    /// plane, which hands it to the other nodes).
    own_until: Option<Instant>,
    /// When Redis was last asked about this target.
    checked: Option<Instant>,
}

impl CoolState {
    /// Time left of the cool-down known here.
    pub fn left(&self, now: Instant) -> Option<Duration> {
        lock(&self.inner).until.filter(|&u| u > now).map(|u| u - now)
    }

    /// Lengthens the cool-down to `until` (never shortens it).
    pub fn extend(&self, until: Instant) {
        let mut c = lock(&self.inner);
        if c.until.is_none_or(|u| u < until) {
            c.until = Some(until);
        }
    }

    /// Starts a cool-down after a 429 this node received.
    fn start(&self, until: Instant) {
        let mut c = lock(&self.inner);
        if c.until.is_none_or(|u| u < until) {
            c.until = Some(until);
        }
        if c.own_until.is_none_or(|u| u < until) {
            c.own_until = Some(until);
        }
    }

    /// Time left of the cool-down this node started itself, if it still runs.
    pub fn own_left(&self, now: Instant) -> Option<Duration> {
        lock(&self.inner).own_until.filter(|&u| u > now).map(|u| u - now)
    }

    /// True (and records the check) when Redis was not asked within [`RECHECK`].
    fn claim_check(&self, now: Instant) -> bool {
        let mut c = lock(&self.inner);
        if c.checked.is_some_and(|t| now.saturating_duration_since(t) < RECHECK) {
            return false;
        }
        c.checked = Some(now);
        true
    }
}

impl Limiter {
    /// Time left of the target's cool-down, on this node or (with Redis) anywhere in the fleet. A Redis failure
    /// counts as no cool-down.
    pub async fn cooling(&self, provider_id: i64, upstream_model: &str, cool: &CoolState) -> Option<Duration> {
        let now = Instant::now();
        if let Some(left) = cool.left(now) {
            return Some(left);
        }
        let fleet = self.inner.fleet.as_ref()?;
        if !fleet.available() || !cool.claim_check(now) {
            return None;
        }
        let left = fleet.cooldown_left(&cool_key(fleet, provider_id, upstream_model)).await.ok()??;
        cool.extend(now + left);
        Some(left)
    }

    /// Cools the target down for `length`, here at once and in the fleet: through Redis when it is configured,
    /// and through the control plane (the status reporter is woken to report it at once).
    pub async fn cool_down(&self, provider_id: i64, upstream_model: &str, cool: &CoolState, length: Duration) {
        cool.start(Instant::now() + length);
        self.inner.cooled.notify_one();
        if let Some(fleet) = &self.inner.fleet
            && let Err(e) = fleet.set_cooldown(&cool_key(fleet, provider_id, upstream_model), length).await
        {
            tracing::warn!(error = %e, provider_id, "could not share an upstream cool-down through redis");
        }
    }
}

fn cool_key(fleet: &super::redis::Fleet, provider_id: i64, upstream_model: &str) -> String {
    format!("{}:{upstream_model}", fleet.key("cool", "provider", provider_id))
}

/// How long a provider's 429 asks to wait: `Retry-After` (seconds or an HTTP date), else the longest of
/// `x-ratelimit-reset-requests`/`-tokens` (`20ms`, `1s`, `6m0s`), else [`DEFAULT_COOLDOWN`]; at most
/// [`MAX_COOLDOWN`]. `header` reads one response header as text.
pub fn cooldown_of<'h>(header: impl Fn(&str) -> Option<&'h str>, now: SystemTime) -> Duration {
    let retry_after = header("retry-after").and_then(|v| {
        let v = v.trim();
        match v.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs.min(1e6))),
            Ok(_) => None,
            Err(_) => {
                let at: SystemTime = v.parse::<actix_web::http::header::HttpDate>().ok()?.into();
                Some(at.duration_since(now).unwrap_or(Duration::ZERO))
            }
        }
    });
    let reset = ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .into_iter()
        .filter_map(|name| header(name).and_then(parse_go_duration))
        .max();
    retry_after.or(reset).unwrap_or(DEFAULT_COOLDOWN).clamp(Duration::from_millis(1), MAX_COOLDOWN)
}

/// A duration as OpenAI writes it (Go's format): `500ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`; a bare number is seconds.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * secs;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && !s.is_empty()).then(|| Duration::from_secs_f64(total.min(1e6)))
}

/// The provider's advertised `x-ratelimit-limit-requests` and `-tokens`, where present.
pub fn advertised_limits<'h>(header: impl Fn(&str) -> Option<&'h str>) -> [(&'static str, Option<u64>); 2] {
    let read = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    [("requests", read("x-ratelimit-limit-requests")), ("tokens", read("x-ratelimit-limit-tokens"))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn durations_in_openais_format() {
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
        assert_eq!(parse_go_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn retry_after_wins_then_the_longest_reset_then_the_default() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(cooldown_of(headers(&[("retry-after", "7")]), now), Duration::from_secs(7));
        let date = actix_web::http::header::HttpDate::from(now + Duration::from_secs(30)).to_string();
        assert_eq!(cooldown_of(headers(&[("retry-after", &date)]), now), Duration::from_secs(30));
        let resets = [("x-ratelimit-reset-requests", "1s"), ("x-ratelimit-reset-tokens", "6m0s")];
        assert_eq!(cooldown_of(headers(&resets), now), Duration::from_secs(360));
        assert_eq!(cooldown_of(headers(&[]), now), DEFAULT_COOLDOWN);
        assert_eq!(cooldown_of(headers(&[("retry-after", "99999")]), now), MAX_COOLDOWN);
    }

    #[test]
    fn advertised_limits_are_read_where_present() {
        let h = [("x-ratelimit-limit-requests", "500")];
        assert_eq!(advertised_limits(headers(&h)), [("requests", Some(500)), ("tokens", None)]);
    }

    #[test]
    fn a_cooldown_only_grows() {
        let c = CoolState::default();
        let now = Instant::now();
        c.extend(now + Duration::from_secs(5));
        c.extend(now + Duration::from_secs(1));
        assert_eq!(c.left(now), Some(Duration::from_secs(5)));
        assert_eq!(c.left(now + Duration::from_secs(6)), None);
    }
}
