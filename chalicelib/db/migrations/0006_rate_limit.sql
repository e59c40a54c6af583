-- The rate limiter's shared state: requests counted per client IP and one-minute window, so
-- that the limit holds across every Lambda instance. One upsert per counted request; the sweep
-- deletes the windows that have ended. UNLOGGED: counts skip the write-ahead log (about 1 ms a
-- request instead of 4 ms on the local stack's PostgreSQL); a crash empties the table, which
-- only gives every client a fresh minute. Aurora PostgreSQL keeps unlogged tables through
-- failovers; a reader cannot read them, and the service reads and writes through the writer.

CREATE UNLOGGED TABLE rate_limit_windows (
    client       text        NOT NULL,
    window_start timestamptz NOT NULL,
    requests     integer     NOT NULL CHECK (requests > 0),
    PRIMARY KEY (client, window_start)
);

CREATE INDEX rate_limit_windows_start_idx ON rate_limit_windows (window_start);
