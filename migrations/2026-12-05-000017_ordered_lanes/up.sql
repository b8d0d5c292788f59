-- Ordered delivery. An endpoint with `ordering` ({"key": "/id",
-- "on_dead_letter": "skip"|"hold"}) gives each delivery a lane: the value at
-- the key in its event's data. A lane has at most one delivery out (its
-- head); the rest wait as `blocked`, in `lane_seq` order. Once the head
-- settles, `lane_release` queues the next one through the outbox.
ALTER TABLE webhook_endpoints ADD COLUMN ordering jsonb;

ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'dead_letter', 'cancelled', 'blocked'));
ALTER TABLE deliveries ADD COLUMN lane text, ADD COLUMN lane_seq bigint;
-- Neither column changes after insert, so updates of ordered deliveries stay heap-only.
CREATE INDEX deliveries_lane ON deliveries (endpoint_id, lane, lane_seq) WHERE lane IS NOT NULL;
CREATE SEQUENCE delivery_lane_seq;

-- One row per lane with a delivery out or waiting; its lock orders the
-- writers of the lane. Deleted when the lane empties.
CREATE TABLE delivery_lanes (
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    lane text NOT NULL,
    head uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, lane)
);

-- A new ordered delivery takes its place in the lane: its head when the lane
-- is empty, otherwise blocked behind it. Writers hold the lane row's share
-- lock to commit, so they never wait on each other, while a release (which
-- takes it exclusively) waits until every delivery entering the lane is
-- committed and sees them all.
CREATE FUNCTION lane_enter() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_head uuid;
BEGIN
    LOOP
        INSERT INTO delivery_lanes (endpoint_id, lane, head) VALUES (NEW.endpoint_id, NEW.lane, NEW.id)
        ON CONFLICT (endpoint_id, lane) DO NOTHING RETURNING head INTO current_head;
        EXIT WHEN FOUND;
        -- Gone again when a release emptied it meanwhile: then insert it.
        SELECT l.head INTO current_head FROM delivery_lanes l
        WHERE l.endpoint_id = NEW.endpoint_id AND l.lane = NEW.lane FOR SHARE;
        EXIT WHEN FOUND;
    END LOOP;
    NEW.lane_seq := nextval('delivery_lane_seq');
    IF current_head <> NEW.id THEN
        NEW.status := 'blocked';
        NEW.next_attempt_at := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deliveries_lane_enter BEFORE INSERT ON deliveries FOR EACH ROW
    WHEN (NEW.lane IS NOT NULL) EXECUTE FUNCTION lane_enter();

-- Moves a lane past `settled` if that is its head and it is settled:
-- delivered, cancelled, or dead-lettered where the endpoint does not hold its
-- lanes on dead letters (or the dead letter was resolved). The next blocked
-- delivery becomes the head and is queued; an empty lane is dropped. Safe to
-- call again: it acts only on the head. Never called from the statement
-- that records attempts: locks taken there would be held to its commit.
--
-- The next delivery is queued through the outbox, unless `through_outbox`
-- is false: a worker publishes it itself then (the sweeper queues a head
-- left unpublished).
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
    -- Never waits: while a writer is entering the lane (it holds the row's
    -- share lock) this gives up, and that writer kicks the lane (`lane_kick`)
    -- once committed. A release waiting here would queue every later writer
    -- behind it.
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

-- Run by a writer once the deliveries it put in lanes are committed: each
-- lane whose head settled meanwhile moves on (its release may have given
-- way to this writer). Never waits on a lock.
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

-- For the sweeper: lanes whose head settled without being released (its
-- worker stopped between recording and releasing; a bulk cancellation), or
-- was released and never published (its worker stopped in between).
CREATE INDEX delivery_lanes_stale ON delivery_lanes (updated_at);

-- A held lane moves on when its dead letter is resolved.
CREATE FUNCTION lane_dead_letter_resolved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lane_release(NEW.delivery_id);
    RETURN NULL;
END $$;
CREATE TRIGGER dead_letters_lane_resolved AFTER UPDATE OF resolved_at ON dead_letters FOR EACH ROW
    WHEN (OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL)
    EXECUTE FUNCTION lane_dead_letter_resolved();
