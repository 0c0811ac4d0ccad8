"""Cairn's neutral package: the generated protocol (cairn.v1, cairn.internal.v1),
the small pure helpers that both services and worker_sdk need, and the CLI.
It imports neither services nor worker_sdk at module level."""
