-- Hourly rollups kept as events and attempts land, so analytics never scan
-- the history. Latency is kept as counts per bucket (upper bounds in ms:
-- 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, +inf).
CREATE TABLE delivery_rollups (
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    endpoint_id     uuid NOT NULL,
    event_type      text NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    succeeded       bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    delivered       bigint NOT NULL DEFAULT 0,
    dead_lettered   bigint NOT NULL DEFAULT 0,
    latency_buckets bigint[] NOT NULL,
    PRIMARY KEY (org_id, hour, endpoint_id, event_type)
);

CREATE TABLE event_rollups (
    org_id          uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    event_type      text NOT NULL,
    events          bigint NOT NULL DEFAULT 0,
    deliveries      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, hour, event_type)
);

CREATE FUNCTION hookline_array_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;

CREATE AGGREGATE hookline_array_sum(bigint[]) (SFUNC = hookline_array_add, STYPE = bigint[]);
