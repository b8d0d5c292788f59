-- The W3C traceparent of the request that wrote the row, carried into the broker message.
ALTER TABLE outbox ADD COLUMN traceparent text;
