-- The result cache shared by every Lambda instance: the last completed result (OK/WARN/FAIL)
-- of a verify or a proof for one (kind, chain, registry, content hash, manifest URI), and when it
-- was checked. A lookup reads it only while it is younger than RESULT_CACHE_SECONDS.
-- The RPC URL is part of the key: a client may name its own node, and a node that lies about
-- its chain must not plant results for everyone who reads that chain through another node.

CREATE TABLE result_cache (
    kind             text        NOT NULL CHECK (kind IN ('verify', 'proof')),
    chain_id         bigint      NOT NULL,
    registry_address text        NOT NULL,
    content_hash     text        NOT NULL,
    manifest_uri     text        NOT NULL,
    rpc_url          text        NOT NULL,
    result           json        NOT NULL,
    checked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, chain_id, registry_address, content_hash, manifest_uri, rpc_url)
);
