//! The worker's batched read: deliveries with their events, by id.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::deliveries::DeliveryRow;
use crate::hot::plan::{CustomPlan, Plan};
use crate::schema::deliveries;

/// Several deliveries with their events, in one query; absent ids are skipped.
///
/// On a connection from `hot::plan::keyed_pool` (`Plan::Keyed`) the statement is
/// planned once, as index lookups. Elsewhere one id, the common case when
/// deliveries do not queue, keeps a cached plan: an equality on the primary
/// key is planned as index lookups even on an empty table, so planning it
/// afresh (most of its cost) buys nothing; a list is planned per execution
/// (see `hot::plan::CustomPlan`).
pub async fn get_many_with_event(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    plan: Plan,
) -> QueryResult<Vec<(DeliveryRow, crate::events::EventRow)>> {
    let query = deliveries::table
        .inner_join(crate::schema::events::table)
        .select((DeliveryRow::as_select(), crate::events::EventRow::as_select()));
    match (plan, ids) {
        (Plan::Keyed, _) => query.filter(deliveries::id.eq_any(ids)).load(conn).await,
        (Plan::PerExecution, [id]) => query.filter(deliveries::id.eq(*id)).load(conn).await,
        (Plan::PerExecution, _) => CustomPlan(query.filter(deliveries::id.eq_any(ids))).load(conn).await,
    }
}
