"""Cairn's server side: frontend (public API), matching (queues, dispatch),
history (run state), and `common` for what they share (config, database, NATS,
gRPC serving). Services never import worker_sdk."""
