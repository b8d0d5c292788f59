-- A JSON predicate over the delivery body; null delivers every subscribed event.
ALTER TABLE webhook_endpoints ADD COLUMN filter jsonb;
