ALTER TABLE deliveries RESET (fillfactor);
CREATE INDEX deliveries_endpoint_status ON deliveries (endpoint_id, status, created_at);
CREATE INDEX deliveries_overdue ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
DROP TABLE delivery_retries;
