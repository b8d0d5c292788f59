-- Ordered delivery. An endpoint with `ordering` ({"key": "/id",
-- "on_dead_letter": "skip"|"hold"}) gives each delivery a lane: the value at
-- the key in its event's data. A lane has at most one delivery out (its
-- head); the rest wait as `blocked`, in `lane_seq` order. Settling the head
-- releases the next one, in the same transaction, through the outbox.
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
-- is empty, otherwise blocked behind it. The lane row's lock, held to
-- commit, makes `lane_seq` follow the order in which writers commit.
CREATE FUNCTION lane_enter() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_head uuid;
BEGIN
    INSERT INTO delivery_lanes AS l (endpoint_id, lane, head) VALUES (NEW.endpoint_id, NEW.lane, NEW.id)
    ON CONFLICT (endpoint_id, lane) DO UPDATE SET updated_at = now()
    RETURNING l.head INTO current_head;
    NEW.lane_seq := nextval('delivery_lane_seq');
    IF current_head <> NEW.id THEN
        NEW.status := 'blocked';
        NEW.next_attempt_at := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER deliveries_lane_enter BEFORE INSERT ON deliveries FOR EACH ROW
    WHEN (NEW.lane IS NOT NULL) EXECUTE FUNCTION lane_enter();

-- Moves a lane past `settled` if it is the head: the next blocked delivery
-- becomes the head and is queued; an empty lane is dropped.
CREATE FUNCTION lane_release(settled uuid) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    d record;
    next_id uuid;
BEGIN
    SELECT id, org_id, endpoint_id, lane, lane_seq INTO d FROM deliveries WHERE id = settled;
    IF d.lane IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM delivery_lanes WHERE endpoint_id = d.endpoint_id AND lane = d.lane AND head = settled FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT id INTO next_id FROM deliveries
    WHERE endpoint_id = d.endpoint_id AND lane = d.lane AND lane_seq > d.lane_seq AND status = 'blocked'
    ORDER BY lane_seq LIMIT 1;
    IF next_id IS NULL THEN
        DELETE FROM delivery_lanes WHERE endpoint_id = d.endpoint_id AND lane = d.lane;
        RETURN NULL;
    END IF;
    UPDATE delivery_lanes SET head = next_id, updated_at = now() WHERE endpoint_id = d.endpoint_id AND lane = d.lane;
    UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now() WHERE id = next_id;
    INSERT INTO outbox (org_id, delivery_id, reason, attempt) VALUES (d.org_id, next_id, 'fresh', 1);
    PERFORM pg_notify('hookline_outbox', '');
    RETURN next_id;
END $$;

-- Delivered and cancelled heads release their lane; a dead-lettered one does
-- unless its endpoint holds the lane on dead letters.
CREATE FUNCTION lane_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'dead_letter' AND EXISTS (
        SELECT 1 FROM webhook_endpoints WHERE id = NEW.endpoint_id AND ordering ->> 'on_dead_letter' = 'hold') THEN
        RETURN NULL;
    END IF;
    PERFORM lane_release(NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_lane_settled AFTER UPDATE OF status ON deliveries FOR EACH ROW
    WHEN (NEW.lane IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('delivered', 'cancelled', 'dead_letter'))
    EXECUTE FUNCTION lane_settled();

-- A held lane moves on when its dead letter is resolved.
CREATE FUNCTION lane_dead_letter_resolved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lane_release(NEW.delivery_id);
    RETURN NULL;
END $$;
CREATE TRIGGER dead_letters_lane_resolved AFTER UPDATE OF resolved_at ON dead_letters FOR EACH ROW
    WHEN (OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL)
    EXECUTE FUNCTION lane_dead_letter_resolved();
