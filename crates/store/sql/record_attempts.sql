-- Records a batch of attempts (see hot::attempts::record_attempts). The code
-- pushes one array parameter per column at each binds marker.
WITH a AS (SELECT * FROM unnest(/* binds */) AS a(id, org_id, delivery_id, endpoint_id, attempt_number, succeeded,
        status_code, error_class, error_message, latency_ms, request_headers, response_headers, response_body,
        created_at, status, next_at)),
inserted AS (
    INSERT INTO delivery_attempts (id, org_id, delivery_id, endpoint_id, attempt_number, succeeded, status_code,
        error_class, error_message, latency_ms, request_headers, response_headers, response_body, created_at)
    SELECT id, org_id, delivery_id, endpoint_id, attempt_number, succeeded, status_code, error_class,
        error_message, latency_ms, request_headers, response_headers, response_body, created_at FROM a),
updated AS (
    -- A failure never undoes a cancellation or a delivery (a duplicate's
    -- attempt that failed after another copy was delivered).
    UPDATE deliveries AS d SET
        status = CASE WHEN d.status IN ('cancelled', 'delivered') AND NOT a.succeeded THEN d.status ELSE a.status END,
        attempt_count = greatest(d.attempt_count, a.attempt_number),
        last_status_code = a.status_code,
        last_error = a.error_message,
        last_attempt_at = a.created_at,
        next_attempt_at = CASE WHEN d.status IN ('cancelled', 'delivered') AND NOT a.succeeded THEN NULL
            ELSE a.next_at END,
        delivered_at = CASE WHEN a.succeeded THEN a.created_at ELSE d.delivered_at END,
        updated_at = a.created_at
    FROM a WHERE d.id = a.delivery_id
    RETURNING d.id, d.status, d.next_attempt_at, d.attempt_count),
scheduled AS (
    INSERT INTO delivery_retries (delivery_id, due_at)
    SELECT id, next_attempt_at FROM updated WHERE status = 'failed' AND next_attempt_at IS NOT NULL
    ON CONFLICT (delivery_id) DO UPDATE SET due_at = excluded.due_at),
unscheduled AS (
    DELETE FROM delivery_retries WHERE delivery_id IN (
        SELECT id FROM updated WHERE attempt_count > 1 AND NOT (status = 'failed' AND next_attempt_at IS NOT NULL))),
s AS (SELECT * FROM unnest(/* binds */) AS s(endpoint_id, org_id, at)),
f AS (SELECT * FROM unnest(/* binds */)
        AS f(endpoint_id, org_id, failures, dead_letters, failing_since, last_failure_at, last_success_at, at)),
folded AS (
    INSERT INTO endpoint_health AS h (endpoint_id, org_id, consecutive_failures, consecutive_dead_letters,
        failing_since, last_failure_at, last_success_at, updated_at)
    SELECT endpoint_id, org_id, failures, dead_letters, failing_since, last_failure_at, last_success_at, at FROM f
    ON CONFLICT (endpoint_id) DO UPDATE SET
        consecutive_failures = CASE WHEN excluded.last_success_at IS NULL
            THEN h.consecutive_failures + excluded.consecutive_failures
            ELSE excluded.consecutive_failures END,
        consecutive_dead_letters = CASE WHEN excluded.last_success_at IS NULL
            THEN h.consecutive_dead_letters + excluded.consecutive_dead_letters
            ELSE excluded.consecutive_dead_letters END,
        failing_since = CASE WHEN excluded.last_success_at IS NULL
            THEN coalesce(h.failing_since, excluded.failing_since)
            ELSE excluded.failing_since END,
        last_failure_at = excluded.last_failure_at,
        last_success_at = coalesce(excluded.last_success_at, h.last_success_at),
        updated_at = excluded.updated_at
    RETURNING 1),
touched AS (
    UPDATE endpoint_health h SET consecutive_failures = 0, consecutive_dead_letters = 0,
        failing_since = NULL, last_success_at = s.at, updated_at = s.at
    FROM s WHERE h.endpoint_id = s.endpoint_id
        AND (h.consecutive_failures <> 0 OR h.consecutive_dead_letters <> 0
            OR h.failing_since IS NOT NULL OR h.last_success_at IS NULL
            OR h.last_success_at < s.at - interval '5 seconds')
    RETURNING 1),
fresh AS (
    INSERT INTO endpoint_health (endpoint_id, org_id, last_success_at)
    SELECT s.endpoint_id, s.org_id, s.at FROM s
    WHERE NOT EXISTS (SELECT 1 FROM endpoint_health h WHERE h.endpoint_id = s.endpoint_id)
    ON CONFLICT DO NOTHING RETURNING 1)
SELECT e.id FROM (SELECT endpoint_id AS id FROM s) AS e WHERE /* SUCCESS_MATTERS */
