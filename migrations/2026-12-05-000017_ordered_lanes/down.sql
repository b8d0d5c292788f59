DROP TRIGGER dead_letters_lane_resolved ON dead_letters;
DROP TRIGGER deliveries_lane_enter ON deliveries;
DROP FUNCTION lane_dead_letter_resolved();
DROP FUNCTION lane_kick(uuid[], text[]);
DROP FUNCTION lane_release(uuid, boolean);
DROP FUNCTION lane_enter();
DROP TABLE delivery_lanes;
DROP SEQUENCE delivery_lane_seq;
UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE status = 'blocked';
ALTER TABLE deliveries DROP COLUMN lane, DROP COLUMN lane_seq;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'dead_letter', 'cancelled'));
ALTER TABLE webhook_endpoints DROP COLUMN ordering;
