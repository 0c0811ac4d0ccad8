"""Every statement matching runs, as named constants grouped by table or
operation. Matching writes only its own tables (tasks, workers, queues); it
reads history's (runs, queue_entries) for counts and the sweep, never locks them."""
