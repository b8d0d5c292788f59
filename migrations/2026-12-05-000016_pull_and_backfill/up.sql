-- Pull endpoints are never pushed to: their owner reads the events through
-- the API instead (url is empty for them).
ALTER TABLE webhook_endpoints
    ADD COLUMN mode text NOT NULL DEFAULT 'push' CHECK (mode IN ('push', 'pull'));

-- Backfills: past events delivered to an endpoint, a batch at a time. The
-- cursor is the last event looked at, so a backfill resumes where it stopped.
CREATE TABLE backfill_jobs (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    since timestamptz NOT NULL,
    until timestamptz NOT NULL,
    -- Null: the endpoint's own subscription.
    events text[],
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'cancelled')),
    cursor uuid,
    scanned bigint NOT NULL DEFAULT 0,
    enqueued bigint NOT NULL DEFAULT 0,
    created_by_key_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX backfill_jobs_running ON backfill_jobs (updated_at) WHERE state = 'running';
CREATE INDEX backfill_jobs_endpoint ON backfill_jobs (endpoint_id, id DESC);
