-- A new event's deliveries are handed to the broker together (one message
-- per event), so they share one outbox row: the row names the event, and
-- the relay publishes the event's deliveries that are still pending. An
-- event to ten endpoints wrote, marked and later pruned ten rows, each with
-- a foreign-key check that locked its delivery; it now writes one. Rows for
-- a single delivery (retries, re-queued deliveries) name the delivery as
-- before.
--
-- event_id has no foreign key: the row is bookkeeping. Events are deleted
-- only by retention, long after their row was published; a relay that finds
-- no pending delivery for a row marks it and moves on.
ALTER TABLE outbox ALTER COLUMN delivery_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN event_id uuid;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK ((delivery_id IS NULL) <> (event_id IS NULL));

-- Every delivery written checked that its endpoint exists, locking the
-- endpoint's row: with every event going to the same few endpoints, the
-- ingest API's concurrent transactions all shared locks on the same rows.
-- Endpoints are never deleted outright (deletion sets deleted_at and
-- cancels what is pending); only an organisation's removal deletes them,
-- and that removes the organisation's events, and with them their
-- deliveries, through events.org_id and deliveries.event_id.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_endpoint_id_fkey;
