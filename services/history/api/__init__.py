"""History's operations, one module per kind of transition (trigger, start,
step, finish, wait, cancel, timers, reads), in the spirit of Temporal's
service/history/api/<operation>/."""
