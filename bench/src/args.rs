//! A small command-line reader (`--flag value`, `--flag=value`, bare `--switch`), enough for the bench's
//! subcommands without a parser dependency.

use std::str::FromStr;

use anyhow::{Context as _, bail};

pub struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    /// `switches` are the flags that take no value.
    pub fn parse(raw: impl IntoIterator<Item = String>, switches: &[&str]) -> anyhow::Result<Self> {
        let mut pairs = Vec::new();
        let mut raw = raw.into_iter();
        while let Some(arg) = raw.next() {
            let Some(flag) = arg.strip_prefix("--") else { bail!("unexpected argument `{arg}`") };
            if let Some((k, v)) = flag.split_once('=') {
                pairs.push((k.to_owned(), Some(v.to_owned())));
            } else if switches.contains(&flag) {
                pairs.push((flag.to_owned(), None));
            } else {
                let v = raw.next().with_context(|| format!("--{flag} needs a value"))?;
                pairs.push((flag.to_owned(), Some(v)));
            }
        }
        Ok(Self { pairs })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }

    pub fn req(&self, name: &str) -> anyhow::Result<&str> {
        self.opt(name).with_context(|| format!("--{name} is required"))
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.opt(name).map(|v| v.parse::<T>().with_context(|| format!("--{name} `{v}`"))).transpose()
    }

    /// A comma-separated list.
    pub fn list<T: FromStr>(&self, name: &str) -> anyhow::Result<Option<Vec<T>>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.opt(name)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim().parse::<T>().with_context(|| format!("--{name} `{s}`")))
                    .collect()
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_values_and_lists() {
        let raw = ["--quick", "--url", "http://x", "--sizes=1,2", "--n", "3"].map(String::from);
        let a = Args::parse(raw, &["quick"]).unwrap();
        assert!(a.flag("quick"));
        assert_eq!(a.req("url").unwrap(), "http://x");
        assert_eq!(a.list::<u32>("sizes").unwrap(), Some(vec![1, 2]));
        assert_eq!(a.parsed::<u32>("n").unwrap(), Some(3));
        assert!(a.req("missing").is_err());
        assert!(Args::parse(["--url".to_owned()], &[]).is_err());
    }
}
