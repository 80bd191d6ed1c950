//! A backing service of either kind for the consumer's end-to-end cases, so that one test body
//! runs against both: portbound's upstream binary (`http`) and a real `redis-server` (`redis`).
//!
//! Both require credentials ([`TOKEN`]), both can be killed with SIGKILL and brought back on
//! their data, and both let a test read what the consumer stored, from the backend itself.

use std::fmt;
use std::net::SocketAddr;

use redis::AsyncCommands;
use serde_json::Value;

use crate::process::{Service, TOKEN, attach, spawn_upstream};
use crate::proxy::FaultProxy;
use crate::redis::RedisServer;

/// Which kind of backing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Redis,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Http => "http",
            Kind::Redis => "redis",
        })
    }
}

/// A running backing service.
pub struct Backend {
    pub kind: Kind,
    upstream: Option<Service>,
    redis: Option<RedisServer>,
    dir: tempfile::TempDir,
}

impl Backend {
    /// A fresh backend of `kind`, or `None` (having said SKIPPED) where Redis is not installed.
    pub async fn start(kind: Kind, test: &str) -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let (upstream, redis) = match kind {
            Kind::Http => (Some(spawn_upstream(dir.path(), "backend", &[]).await), None),
            Kind::Redis => (None, Some(RedisServer::start(test, Some(TOKEN)).await?)),
        };
        Some(Backend {
            kind,
            upstream,
            redis,
            dir,
        })
    }

    /// `UPSTREAM_URL` for a consumer attached to it, with the right credentials.
    pub fn attach_url(&self) -> String {
        match (&self.upstream, &self.redis) {
            (Some(upstream), _) => attach(upstream.port),
            (_, Some(redis)) => redis.attach_url(),
            _ => panic!("the backend is not running"),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        match (&self.upstream, &self.redis) {
            (Some(upstream), _) => ([127, 0, 0, 1], upstream.port).into(),
            (_, Some(redis)) => ([127, 0, 0, 1], redis.port).into(),
            _ => panic!("the backend is not running"),
        }
    }

    /// A fault proxy in front of it: one that checks the contract for an upstream, one that
    /// passes bytes for Redis.
    pub async fn proxy(&self) -> FaultProxy {
        match self.kind {
            Kind::Http => FaultProxy::start(self.address()).await,
            Kind::Redis => FaultProxy::start_raw(self.address()).await,
        }
    }

    /// `UPSTREAM_URL` reaching it through something listening on `port` of 127.0.0.1.
    pub fn attach_url_at(&self, port: u16) -> String {
        let own = format!("127.0.0.1:{}", self.address().port());
        self.attach_url()
            .replace(&own, &format!("127.0.0.1:{port}"))
    }

    /// `UPSTREAM_URL` with `password` in place of the right one.
    pub fn attach_url_with_password(&self, password: &str) -> String {
        self.attach_url().replace(TOKEN, password)
    }

    /// SIGKILL, as a crash would.
    pub async fn kill9(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            upstream.kill9().await;
        }
        if let Some(redis) = &mut self.redis {
            redis.kill9().await;
        }
    }

    /// Starts it again on its data after [`Backend::kill9`], where `consumer` reaches it: an
    /// upstream comes back on a new port behind the consumer's proxy, Redis on its old port.
    pub async fn restart(&mut self, consumer: &Service) {
        match self.kind {
            Kind::Http => {
                let upstream = spawn_upstream(self.dir.path(), "backend", &[]).await;
                consumer
                    .upstream_proxy()
                    .retarget(([127, 0, 0, 1], upstream.port).into());
                self.upstream = Some(upstream);
            }
            Kind::Redis => self.redis.as_mut().unwrap().restart().await,
        }
    }

    /// The link document stored for `code`, read from the backend itself.
    pub async fn stored_link(&self, code: &str) -> Option<Value> {
        match (&self.upstream, &self.redis) {
            (Some(upstream), _) => {
                let response = reqwest::Client::new()
                    .get(format!("{}/v1/kv/links%2F{code}", upstream.url))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap();
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return None;
                }
                Some(response.json().await.unwrap())
            }
            (_, Some(redis)) => {
                let mut connection = redis.connection().await;
                let json: Option<String> = connection
                    .get(format!("portbound:links:{code}"))
                    .await
                    .unwrap();
                json.map(|json| serde_json::from_str(&json).unwrap())
            }
            _ => panic!("the backend is not running"),
        }
    }

    /// The clicks counted for `code`, read from the backend itself.
    pub async fn stored_clicks(&self, code: &str) -> i64 {
        match (&self.upstream, &self.redis) {
            (Some(upstream), _) => {
                let counter: Value = reqwest::Client::new()
                    .get(format!("{}/v1/counters/clicks%2F{code}", upstream.url))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                counter["value"].as_i64().unwrap()
            }
            (_, Some(redis)) => {
                let mut connection = redis.connection().await;
                let count: Option<i64> = connection
                    .get(format!("portbound:clicks:{code}"))
                    .await
                    .unwrap();
                count.unwrap_or(0)
            }
            _ => panic!("the backend is not running"),
        }
    }
}
