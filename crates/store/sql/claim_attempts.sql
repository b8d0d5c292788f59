-- Claims the right to publish attempt `next` of each delivery (see
-- hot::attempts::claim_next_attempts).
UPDATE deliveries AS d SET scheduled_attempt = c.next
FROM unnest(/* binds */) AS c(id, next)
WHERE d.id = c.id AND d.scheduled_attempt < c.next AND d.status = 'failed'
RETURNING d.id
