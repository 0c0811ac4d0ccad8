"""The `cairn` command and the dev launcher: above both the services and the SDK."""
