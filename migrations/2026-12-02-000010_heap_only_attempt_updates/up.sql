-- Recording an attempt changes a delivery's status and next attempt time.
-- Both were indexed (the sweeper's index of retries, and an endpoint's
-- deliveries by status), so every attempt wrote a new entry in all seven
-- indexes of `deliveries`: four fifths of the attempt statement's time. With
-- neither column indexed, and room left in each page for the new version,
-- the update is heap-only (HOT) and touches no index. A fill factor of 60
-- made about three quarters of them HOT in the ten-endpoint benchmark (80:
-- two fifths); the versions they replace are pruned in place.
--
-- The sweeper finds retries whose message was lost through a narrow table
-- of scheduled retries instead: a row per delivery waiting for a retry,
-- written and removed by the attempt statement itself.
CREATE TABLE delivery_retries (
    delivery_id uuid PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    due_at      timestamptz NOT NULL
);
CREATE INDEX delivery_retries_due ON delivery_retries (due_at);
INSERT INTO delivery_retries (delivery_id, due_at)
SELECT id, next_attempt_at FROM deliveries WHERE status = 'failed' AND next_attempt_at IS NOT NULL;

DROP INDEX deliveries_overdue;
-- An endpoint's deliveries by status are found through
-- deliveries_endpoint_listing (endpoint_id, id) and filtered.
DROP INDEX deliveries_endpoint_status;
ALTER TABLE deliveries SET (fillfactor = 60);
