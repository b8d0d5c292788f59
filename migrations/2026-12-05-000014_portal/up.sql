-- The embeddable portal: which origins may frame it, and its look per organisation.
ALTER TABLE organisations
    ADD COLUMN portal_origins text[] NOT NULL DEFAULT '{}',
    ADD COLUMN portal_accent_color text CHECK (portal_accent_color ~ '^#[0-9a-fA-F]{6}$'),
    ADD COLUMN portal_logo_url text;

-- Short-lived portal links. The token is in the link only; this keeps its hash.
CREATE TABLE portal_sessions (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    mode text NOT NULL CHECK (mode IN ('manage', 'view')),
    -- Null: every endpoint of the organisation.
    webhook_ids uuid[],
    created_by_key_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX portal_sessions_listing ON portal_sessions (org_id, id DESC);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
