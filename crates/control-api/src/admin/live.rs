//! `/admin/stream`: server-sent events telling open pages that deliveries,
//! attempts or alerts changed, so their live regions refresh themselves.
//!
//! Each open stream checks a cheap fingerprint of the organisation's newest
//! deliveries once a second and sends `event: changed` when it moves (and
//! once on connecting, for what happened before the stream opened). The
//! stream ends after the session's idle timeout; the browser reconnects,
//! which checks the session again. A session keeps at most
//! [`STREAMS_PER_SESSION`] streams open on one instance, since each costs a
//! query a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::ControlState;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::error::ApiError;

use super::session::{AdminSession, Refusal};

const POLL: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Open streams one session may hold on one instance (a tab each).
pub const STREAMS_PER_SESSION: usize = 8;

/// Open streams by session (keyed by its CSRF token, never the session token).
#[derive(Default)]
struct Open(Mutex<HashMap<String, usize>>);

static OPEN: std::sync::LazyLock<Arc<Open>> = std::sync::LazyLock::new(Arc::default);

/// One open stream of a session; closing the stream (or the client going
/// away, which drops it) gives the place back.
struct Place {
    open: Arc<Open>,
    session: String,
}

impl Open {
    fn take(self: &Arc<Self>, session: String) -> Option<Place> {
        let mut map = self.0.lock().expect("streams lock");
        let n = map.entry(session.clone()).or_default();
        if *n >= STREAMS_PER_SESSION {
            return None;
        }
        *n += 1;
        Some(Place { open: Arc::clone(self), session })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.open.0.lock().expect("streams lock");
        if let Some(n) = map.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.session);
            }
        }
    }
}

struct State {
    _place: Place,
    app: web::Data<ControlState>,
    org: uuid::Uuid,
    last: Option<String>,
    last_sent: Instant,
    until: Instant,
    first: bool,
}

pub async fn stream(app: web::Data<ControlState>, s: AdminSession) -> Result<HttpResponse, Refusal> {
    s.principal.require(Scope::DeliveriesRead)?;
    let place = OPEN.take(s.csrf()).ok_or_else(|| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "Too many live streams")
            .detail(format!("this session already has {STREAMS_PER_SESSION} live streams open; close a tab"))
    })?;
    let lifetime = Duration::from_secs(app.settings.admin_session_idle_secs);
    let state = State {
        _place: place,
        org: s.org_id().as_uuid(),
        app,
        last: None,
        last_sent: Instant::now(),
        until: Instant::now() + lifetime,
        first: true,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.first {
            st.first = false;
            st.last = fingerprint(&st).await;
            // How soon to reconnect; and a first `changed`, since anything may
            // have happened between the page's rendering and this connection.
            return Some((
                Ok::<_, actix_web::Error>(Bytes::from_static(b"retry: 2000\n\nevent: changed\ndata: {}\n\n")),
                st,
            ));
        }
        loop {
            if Instant::now() >= st.until || st.app.cancel.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = st.app.cancel.cancelled() => return None,
            }
            if let Some(current) = fingerprint(&st).await {
                let changed = st.last.as_ref().is_some_and(|l| *l != current);
                st.last = Some(current);
                if changed {
                    st.last_sent = Instant::now();
                    return Some((Ok(Bytes::from_static(b"event: changed\ndata: {}\n\n")), st));
                }
            }
            if st.last_sent.elapsed() >= HEARTBEAT {
                st.last_sent = Instant::now();
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st));
            }
        }
    });
    Ok(HttpResponse::Ok().content_type("text/event-stream").insert_header(("X-Accel-Buffering", "no")).streaming(body))
}

async fn fingerprint(st: &State) -> Option<String> {
    let mut c = st.app.conn().await.ok()?;
    hookline_store::deliveries::activity_fingerprint(&mut c, st.org).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stream_gives_its_place_back() {
        let open = Arc::new(Open::default());
        let places: Vec<Place> = (0..STREAMS_PER_SESSION).map(|_| open.take("s".into()).unwrap()).collect();
        assert!(open.take("s".into()).is_none());
        assert!(open.take("t".into()).is_some(), "another session has its own");
        drop(places);
        assert!(open.take("s".into()).is_some());
        assert!(open.0.lock().unwrap().len() <= 1, "closed sessions leave nothing behind");
    }
}
