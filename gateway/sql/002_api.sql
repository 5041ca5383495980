-- The REST API (issue 4): claims filed by issuers.

-- A claim is queued as a claim log entry (pending_entries, kind 5); this row keeps
-- its exact entry bytes and who filed it.  Its log index is found by the entry's
-- SHA-256 (the index below) once the sequencer has logged it, then kept here.
CREATE TABLE claims (
    id         bigserial PRIMARY KEY,
    issuer     text NOT NULL,
    entry      bytea NOT NULL,          -- the claim log entry, exactly as logged
    entry_hash bytea NOT NULL UNIQUE,   -- sha256(entry): one claim row per log entry
    log_index  bigint,                  -- null until found in entries
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_issuer ON claims (issuer, id);

-- Finding a logged claim entry by its hash.
CREATE INDEX entries_claim_hash ON entries (sha256(data)) WHERE kind = 5;
