//! `/admin/stream`: server-sent events telling open pages that deliveries,
//! attempts or alerts changed, so their live regions refresh themselves.
//!
//! Each open stream checks a cheap fingerprint of the organisation's newest
//! deliveries once a second and sends `event: changed` when it moves (and
//! once on connecting, for what happened before the stream opened). The
//! stream ends after the session's idle timeout; the browser reconnects,
//! which checks the session again.

use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use hookline_domain::scope::Scope;
use hookline_service_kit::kit::Kit;

use super::session::{AdminSession, Refusal};

const POLL: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(15);

struct State {
    kit: web::Data<Kit>,
    org: uuid::Uuid,
    last: Option<String>,
    last_sent: Instant,
    until: Instant,
    first: bool,
}

pub async fn stream(kit: web::Data<Kit>, s: AdminSession) -> Result<HttpResponse, Refusal> {
    s.principal.require(Scope::DeliveriesRead)?;
    let lifetime = Duration::from_secs(kit.settings.admin_session_idle_secs);
    let state = State {
        org: s.org_id().as_uuid(),
        kit,
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
            if Instant::now() >= st.until || st.kit.cancel.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = st.kit.cancel.cancelled() => return None,
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
    let mut c = st.kit.conn().await.ok()?;
    hookline_store::deliveries::activity_fingerprint(&mut c, st.org).await.ok()
}
