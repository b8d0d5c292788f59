DROP AGGREGATE IF EXISTS hookline_array_sum(bigint[]);
DROP FUNCTION IF EXISTS hookline_array_add(bigint[], bigint[]);
DROP TABLE IF EXISTS event_rollups;
DROP TABLE IF EXISTS delivery_rollups;
