"""Code the three services share: configuration, the database and its
migrations, the NATS notification bus, gRPC serving and error mapping."""
