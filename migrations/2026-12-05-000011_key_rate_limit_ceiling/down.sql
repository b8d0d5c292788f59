ALTER TABLE organisations DROP COLUMN max_key_rate_limit_per_hour;
