//! Accepted events written in shared statements (group commit): the
//! events, their deliveries and their outbox rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hookline_domain::status::OutboxReason;
use uuid::Uuid;

use crate::events::{new_deliveries, NewEvent, Written};
use crate::hot::Pieces;

/// Writes several events with their deliveries and outbox rows in one
/// statement (atomic on its own: no transaction around it, one round trip
/// for the whole batch). An event whose idempotency key is taken is skipped,
/// not an error. The outbox rows are left to the relay from `publish_after`
/// on; they are returned, with what their broker messages need, for the
/// caller to publish before that, together with the lanes (endpoint, lane)
/// the caller must kick now that the write is committed (see
/// [`crate::lanes::kick`]).
pub async fn fan_out_many(
    conn: &mut AsyncPgConnection,
    batch: &[NewEvent],
    publish_after: DateTime<Utc>,
) -> QueryResult<(Vec<Written>, Vec<crate::outbox::Pending>, Vec<(Uuid, String)>)> {
    let mut deliveries: Vec<_> = batch.iter().flat_map(|n| new_deliveries(&n.event, &n.endpoints, &n.lanes)).collect();
    // Writers lock the lanes they enter in one order (by endpoint, then
    // lane), so two batches cannot wait on each other; within a lane the
    // batch's order is kept. Unordered deliveries stay as they are.
    if deliveries.iter().any(|d| d.lane.is_some()) {
        deliveries.sort_by(|a, b| {
            (a.lane.is_some().then_some(a.endpoint_id), &a.lane)
                .cmp(&(b.lane.is_some().then_some(b.endpoint_id), &b.lane))
        });
    }
    // One outbox row per event that has a delivery.
    let with_deliveries: Vec<&NewEvent> = batch.iter().filter(|n| !n.endpoints.is_empty()).collect();
    let statement = FanOut {
        ids: batch.iter().map(|n| n.event.id).collect(),
        orgs: batch.iter().map(|n| n.event.org_id).collect(),
        types: batch.iter().map(|n| n.event.event_type.as_str()).collect(),
        data: batch.iter().map(|n| &n.event.data).collect(),
        occurred: batch.iter().map(|n| n.event.occurred_at).collect(),
        keys: batch.iter().map(|n| n.event.idempotency_key.as_deref()).collect(),
        hashes: batch.iter().map(|n| n.event.request_hash.as_deref()).collect(),
        counts: batch.iter().map(|n| n.event.delivery_count).collect(),
        created: batch.iter().map(|n| n.event.created_at).collect(),
        d_ids: deliveries.iter().map(|d| d.id).collect(),
        d_orgs: deliveries.iter().map(|d| d.org_id).collect(),
        d_events: deliveries.iter().map(|d| d.event_id).collect(),
        d_endpoints: deliveries.iter().map(|d| d.endpoint_id).collect(),
        d_types: deliveries.iter().map(|d| d.event_type.as_str()).collect(),
        d_at: deliveries.iter().map(|d| d.created_at).collect(),
        d_lanes: deliveries.iter().map(|d| d.lane.as_deref()).collect(),
        o_events: with_deliveries.iter().map(|n| n.event.id).collect(),
        o_orgs: with_deliveries.iter().map(|n| n.event.org_id).collect(),
        o_traceparents: with_deliveries.iter().map(|n| n.traceparent.as_deref()).collect(),
        publish_after,
    };
    let mut stored = std::collections::HashSet::new();
    let mut outbox_ids = std::collections::HashMap::new();
    let mut blocked = std::collections::HashSet::new();
    for row in statement.load::<FanOutRow>(conn).await? {
        if let Some(id) = row.blocked {
            blocked.insert(id);
            continue;
        }
        stored.insert(row.event_id);
        if let Some(outbox) = row.outbox_id {
            outbox_ids.insert(row.event_id, outbox);
        }
    }
    // Their lanes' heads may have settled while this statement held them.
    let mut to_kick: Vec<(Uuid, String)> = deliveries
        .iter()
        .filter(|d| blocked.contains(&d.id))
        .filter_map(|d| Some((d.endpoint_id, d.lane.clone()?)))
        .collect();
    to_kick.dedup();
    let written = batch
        .iter()
        .map(|n| if stored.contains(&n.event.id) { Written::Stored(n.endpoints.len()) } else { Written::KeyTaken })
        .collect();
    let traceparents: std::collections::HashMap<Uuid, Option<&str>> =
        with_deliveries.iter().map(|n| (n.event.id, n.traceparent.as_deref())).collect();
    let to_publish = deliveries
        .into_iter()
        .filter(|d| !blocked.contains(&d.id))
        .filter_map(|d| {
            Some(crate::outbox::Pending {
                id: *outbox_ids.get(&d.event_id)?,
                org_id: d.org_id,
                delivery_id: d.id,
                reason: OutboxReason::Fresh,
                attempt: 1,
                created_at: d.created_at,
                endpoint_id: d.endpoint_id,
                traceparent: traceparents.get(&d.event_id).copied().flatten().map(str::to_owned),
                event_id: d.event_id,
                event_type: d.event_type,
            })
        })
        .collect();
    Ok((written, to_publish, to_kick))
}

/// The statement behind [`fan_out_many`]: the events whose idempotency key
/// is free, then the deliveries and the outbox row of each event actually
/// inserted, as data-modifying CTEs over arrays (the foreign keys between
/// them are checked at its end). Its text does not change with the batch
/// size, so a connection prepares it once and runs it in one round trip.
struct FanOut<'a> {
    ids: Vec<Uuid>,
    orgs: Vec<Uuid>,
    types: Vec<&'a str>,
    data: Vec<&'a serde_json::Value>,
    occurred: Vec<DateTime<Utc>>,
    keys: Vec<Option<&'a str>>,
    hashes: Vec<Option<&'a [u8]>>,
    counts: Vec<i32>,
    created: Vec<DateTime<Utc>>,
    d_ids: Vec<Uuid>,
    d_orgs: Vec<Uuid>,
    d_events: Vec<Uuid>,
    d_endpoints: Vec<Uuid>,
    d_types: Vec<&'a str>,
    d_at: Vec<DateTime<Utc>>,
    d_lanes: Vec<Option<&'a str>>,
    o_events: Vec<Uuid>,
    o_orgs: Vec<Uuid>,
    o_traceparents: Vec<Option<&'a str>>,
    publish_after: DateTime<Utc>,
}

/// An event the statement stored and its outbox row if it has deliveries;
/// or, with `blocked`, one of its deliveries that waits in its lane.
#[derive(QueryableByName)]
struct FanOutRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    outbox_id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    blocked: Option<Uuid>,
}

impl diesel::query_builder::QueryId for FanOut<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for FanOut<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FanOut<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bytea, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        let mut sql = Pieces::of(include_str!("../../sql/fan_out.sql"));
        out.push_sql(sql.next());
        push_binds!(out;
            Array<SqlUuid> => &self.ids,
            Array<SqlUuid> => &self.orgs,
            Array<Text> => &self.types,
            Array<Jsonb> => &self.data,
            Array<Timestamptz> => &self.occurred,
            Array<Nullable<Text>> => &self.keys,
            Array<Nullable<Bytea>> => &self.hashes,
            Array<Int4> => &self.counts,
            Array<Timestamptz> => &self.created,
        );
        out.push_sql(sql.next());
        push_binds!(out;
            Array<SqlUuid> => &self.d_ids,
            Array<SqlUuid> => &self.d_orgs,
            Array<SqlUuid> => &self.d_events,
            Array<SqlUuid> => &self.d_endpoints,
            Array<Text> => &self.d_types,
            Array<Timestamptz> => &self.d_at,
            Array<Nullable<Text>> => &self.d_lanes,
        );
        out.push_sql(sql.next());
        out.push_bind_param::<Timestamptz, _>(&self.publish_after)?;
        out.push_sql(sql.next());
        push_binds!(out;
            Array<SqlUuid> => &self.o_events,
            Array<SqlUuid> => &self.o_orgs,
            Array<Nullable<Text>> => &self.o_traceparents,
        );
        out.push_sql(sql.next());
        Ok(())
    }
}
