-- Every row written on the hot path ran one foreign-key check per key, each
-- a lookup that locks the referenced row. Four of them guard nothing another
-- key does not: a delivery's organisation is its event's (events.org_id
-- cascades to the event, and the event to its deliveries), and an attempt's
-- or outbox row's organisation and endpoint are its delivery's
-- (delivery_id cascades). Deleting an organisation or an endpoint still
-- removes every row below it, through those cascades.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_org_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_org_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_org_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_endpoint_id_fkey;
