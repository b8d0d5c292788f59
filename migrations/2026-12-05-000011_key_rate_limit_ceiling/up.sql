-- The operator's ceiling on the rate limit an organisation may give its own keys.
ALTER TABLE organisations ADD COLUMN max_key_rate_limit_per_hour integer
    CHECK (max_key_rate_limit_per_hour IS NULL OR max_key_rate_limit_per_hour > 0);
