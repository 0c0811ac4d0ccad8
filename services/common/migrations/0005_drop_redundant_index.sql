-- Cairn schema, version 5: queue_entries_by_key (namespace, queue, concurrency_key, ...)
-- serves the depth count on (namespace, queue) as well; one index less to keep on
-- every trigger and start.
DROP INDEX IF EXISTS queue_entries_depth;
