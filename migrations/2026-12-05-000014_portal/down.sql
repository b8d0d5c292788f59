DROP TABLE portal_sessions;
ALTER TABLE organisations DROP COLUMN portal_origins, DROP COLUMN portal_accent_color, DROP COLUMN portal_logo_url;
