DROP INDEX IF EXISTS deliveries_overdue;
ALTER TABLE deliveries DROP COLUMN IF EXISTS scheduled_attempt;
