CREATE INDEX delivery_lanes_stale ON delivery_lanes (updated_at);
DROP FUNCTION lane_kick(uuid[], text[]);
DROP FUNCTION lane_release(uuid, boolean);

CREATE FUNCTION lane_release(settled uuid, through_outbox boolean DEFAULT true)
RETURNS TABLE (next_id uuid, event_id uuid, event_type text) LANGUAGE plpgsql AS $$
DECLARE
    d record;
    n record;
BEGIN
    SELECT x.id, x.org_id, x.endpoint_id, x.lane, x.lane_seq, x.status INTO d FROM deliveries x WHERE x.id = settled;
    IF d.lane IS NULL OR d.status NOT IN ('delivered', 'cancelled', 'dead_letter') THEN
        RETURN;
    END IF;
    IF d.status = 'dead_letter'
        AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.delivery_id = settled AND x.resolved_at IS NOT NULL)
        AND EXISTS (SELECT 1 FROM webhook_endpoints x
                    WHERE x.id = d.endpoint_id AND x.ordering ->> 'on_dead_letter' = 'hold') THEN
        RETURN;
    END IF;
    PERFORM 1 FROM delivery_lanes l WHERE l.endpoint_id = d.endpoint_id AND l.lane = d.lane AND l.head = settled
        FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT x.id, x.event_id, x.event_type INTO n FROM deliveries x
    WHERE x.endpoint_id = d.endpoint_id AND x.lane = d.lane AND x.lane_seq > d.lane_seq AND x.status = 'blocked'
    ORDER BY x.lane_seq LIMIT 1;
    IF n.id IS NULL THEN
        DELETE FROM delivery_lanes l WHERE l.endpoint_id = d.endpoint_id AND l.lane = d.lane;
        RETURN;
    END IF;
    UPDATE delivery_lanes l SET head = n.id, updated_at = now() WHERE l.endpoint_id = d.endpoint_id AND l.lane = d.lane;
    UPDATE deliveries x SET status = 'pending', next_attempt_at = now(), updated_at = now() WHERE x.id = n.id;
    IF through_outbox THEN
        INSERT INTO outbox (org_id, delivery_id, reason, attempt) VALUES (d.org_id, n.id, 'fresh', 1);
        PERFORM pg_notify('hookline_outbox', '');
    END IF;
    RETURN QUERY SELECT n.id, n.event_id, n.event_type;
END $$;

CREATE FUNCTION lane_kick(endpoints uuid[], lanes text[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h uuid;
    moved integer := 0;
BEGIN
    FOR i IN 1 .. coalesce(array_length(endpoints, 1), 0) LOOP
        SELECT l.head INTO h FROM delivery_lanes l WHERE l.endpoint_id = endpoints[i] AND l.lane = lanes[i];
        IF FOUND AND EXISTS (SELECT 1 FROM lane_release(h)) THEN
            moved := moved + 1;
        END IF;
    END LOOP;
    RETURN moved;
END $$;
