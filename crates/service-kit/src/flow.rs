//! An endpoint's adaptive flow state as the worker fleet keeps it in Redis
//! (see the delivery worker's `flow` module), read here for stats.

use uuid::Uuid;

use crate::redis_conn::RedisConn;

/// The endpoint's flow state as Redis holds it, for stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowState {
    /// The adaptive rate now, when the endpoint is being held back.
    pub rate: Option<f64>,
    /// The rate it climbs back to.
    pub ceiling: Option<f64>,
    /// No sends before this (Unix ms).
    pub paused_until_ms: Option<i64>,
}

pub fn flow_key(redis: &RedisConn, endpoint: Uuid) -> String {
    redis.key(&format!("flow:{}", endpoint.simple()))
}

/// Reads an endpoint's flow state (the control API's stats).
pub async fn read_state(redis: &RedisConn, endpoint: Uuid) -> redis::RedisResult<FlowState> {
    let mut conn = redis.manager.clone();
    let (rate, ceiling, until): (Option<f64>, Option<f64>, Option<i64>) = redis::cmd("HMGET")
        .arg(flow_key(redis, endpoint))
        .arg("rate")
        .arg("ceiling")
        .arg("until")
        .query_async(&mut conn)
        .await?;
    Ok(FlowState { rate, ceiling, paused_until_ms: until })
}
