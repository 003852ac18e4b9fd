//! For developers: `serve --watch`, `wharf new`, and the `redis-server`
//! started when no `REDIS_URL` is given.

pub mod build;
pub mod embedded_redis;
pub mod scaffold;
pub mod watch;
