-- Signed-in admin UI sessions. Only a hash of the session token is stored;
-- the token itself lives in the browser's HttpOnly cookie.
CREATE TABLE admin_sessions (
    token_hash bytea PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX admin_sessions_key ON admin_sessions (key_id);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
