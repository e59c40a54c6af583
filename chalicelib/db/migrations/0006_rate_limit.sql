-- The rate limiter's shared state: requests counted per client IP and one-minute window, so
-- that the limit holds across every Lambda instance. One upsert per counted request; the sweep
-- deletes the windows that have ended.

CREATE TABLE rate_limit_windows (
    client       text        NOT NULL,
    window_start timestamptz NOT NULL,
    requests     integer     NOT NULL CHECK (requests > 0),
    PRIMARY KEY (client, window_start)
);

CREATE INDEX rate_limit_windows_start_idx ON rate_limit_windows (window_start);
