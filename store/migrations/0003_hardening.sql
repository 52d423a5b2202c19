-- 0003_hardening: the unlock limiter's counters, kept across restarts so that
-- restarting the agent does not hand out fresh password guesses. One row per
-- import that has had an unlock attempt counted; a success deletes it.

CREATE TABLE unlock_limits (
    import_id    TEXT PRIMARY KEY CHECK (import_id <> ''),
    failures     INTEGER NOT NULL CHECK (failures > 0),
    locked_until INTEGER -- Unix nanoseconds; NULL when not locked out
) STRICT;
