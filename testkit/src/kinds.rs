//! A backing service of each kind for the consumer's end-to-end cases, so that one test body
//! runs against every kind: portbound's upstream binary (`http`), a real `redis-server`
//! (`redis`) and a real PostgreSQL server (`postgres`).
//!
//! All require credentials ([`TOKEN`]), all can be killed with SIGKILL and brought back on
//! their data, and all let a test read what the consumer stored, from the backend itself.

use std::fmt;
use std::net::SocketAddr;

use redis::AsyncCommands;
use serde_json::Value;

use crate::postgres::PostgresServer;
use crate::process::{Service, TOKEN, attach, spawn_upstream};
use crate::proxy::FaultProxy;
use crate::redis::RedisServer;

/// Which kind of backing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Redis,
    Postgres,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Http => "http",
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        })
    }
}

/// A running backing service.
pub struct Backend {
    pub kind: Kind,
    upstream: Option<Service>,
    redis: Option<RedisServer>,
    postgres: Option<PostgresServer>,
    dir: tempfile::TempDir,
}

impl Backend {
    /// A fresh backend of `kind`, or `None` (having said SKIPPED) where its server is not
    /// installed.
    pub async fn start(kind: Kind, test: &str) -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = Backend {
            kind,
            upstream: None,
            redis: None,
            postgres: None,
            dir,
        };
        match kind {
            Kind::Http => {
                backend.upstream = Some(spawn_upstream(backend.dir.path(), "backend", &[]).await);
            }
            Kind::Redis => backend.redis = Some(RedisServer::start(test, Some(TOKEN)).await?),
            Kind::Postgres => {
                backend.postgres = Some(PostgresServer::start(test, TOKEN).await?);
            }
        }
        Some(backend)
    }

    /// `UPSTREAM_URL` for a consumer attached to it, with the right credentials.
    pub fn attach_url(&self) -> String {
        match (&self.upstream, &self.redis, &self.postgres) {
            (Some(upstream), _, _) => attach(upstream.port),
            (_, Some(redis), _) => redis.attach_url(),
            (_, _, Some(postgres)) => postgres.attach_url(),
            _ => panic!("the backend is not running"),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        let port = match (&self.upstream, &self.redis, &self.postgres) {
            (Some(upstream), _, _) => upstream.port,
            (_, Some(redis), _) => redis.port,
            (_, _, Some(postgres)) => postgres.port,
            _ => panic!("the backend is not running"),
        };
        ([127, 0, 0, 1], port).into()
    }

    /// A fault proxy in front of it: one that checks the contract for an upstream, one that
    /// passes bytes for the others.
    pub async fn proxy(&self) -> FaultProxy {
        match self.kind {
            Kind::Http => FaultProxy::start(self.address()).await,
            Kind::Redis | Kind::Postgres => FaultProxy::start_raw(self.address()).await,
        }
    }

    /// Text in the request that counts a click batch, for [`crate::proxy::Fault::LoseAnswerTo`]:
    /// the batch's call to an upstream, the script's `EVAL` on Redis (sent after the `EVALSHA`
    /// that a fresh server answers `NOSCRIPT`), the transaction's `COMMIT` on PostgreSQL.
    pub fn batch_commit(&self) -> &'static str {
        match self.kind {
            Kind::Http => "POST /v1/counters ",
            Kind::Redis => "$4\r\nEVAL\r\n",
            Kind::Postgres => "COMMIT",
        }
    }

    /// The PostgreSQL server, for a case of that kind.
    pub fn postgres(&self) -> &PostgresServer {
        self.postgres.as_ref().expect("a postgres backend")
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
        if let Some(postgres) = &mut self.postgres {
            postgres.kill9().await;
        }
    }

    /// Starts it again on its data after [`Backend::kill9`], where `consumer` reaches it: an
    /// upstream comes back on a new port behind the consumer's proxy, Redis and PostgreSQL on
    /// their old ports.
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
            Kind::Postgres => self.postgres.as_mut().unwrap().restart().await,
        }
    }

    /// The link document stored for `code`, read from the backend itself.
    pub async fn stored_link(&self, code: &str) -> Option<Value> {
        match (&self.upstream, &self.redis, &self.postgres) {
            (Some(upstream), _, _) => {
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
            (_, Some(redis), _) => {
                let mut connection = redis.connection().await;
                let json: Option<String> = connection
                    .get(format!("portbound:links:{code}"))
                    .await
                    .unwrap();
                json.map(|json| serde_json::from_str(&json).unwrap())
            }
            (_, _, Some(postgres)) => {
                let row = postgres
                    .client()
                    .await
                    .query_opt(
                        "SELECT json_build_object('url', url, 'created_at', created_at, \
                         'creation_id', creation_id)::text FROM portbound_links WHERE code = $1",
                        &[&code],
                    )
                    .await
                    .unwrap();
                row.map(|row| serde_json::from_str(row.get(0)).unwrap())
            }
            _ => panic!("the backend is not running"),
        }
    }

    /// The clicks counted for `code`, read from the backend itself.
    pub async fn stored_clicks(&self, code: &str) -> i64 {
        match (&self.upstream, &self.redis, &self.postgres) {
            (Some(upstream), _, _) => {
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
            (_, Some(redis), _) => {
                let mut connection = redis.connection().await;
                let count: Option<i64> = connection
                    .get(format!("portbound:clicks:{code}"))
                    .await
                    .unwrap();
                count.unwrap_or(0)
            }
            (_, _, Some(postgres)) => postgres
                .client()
                .await
                .query_opt(
                    "SELECT clicks FROM portbound_clicks WHERE code = $1",
                    &[&code],
                )
                .await
                .unwrap()
                .map_or(0, |row| row.get(0)),
            _ => panic!("the backend is not running"),
        }
    }
}
