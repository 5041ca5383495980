-- Issue 12: the log's key, the registry's version, receipts owed.

-- The log's public key (its C2SP verifier key string), recorded with the first
-- checkpoint: a gateway whose key file holds another key refuses to start.
ALTER TABLE log_state ADD COLUMN log_key text;

-- Bumped by every key rotation and revocation, under an exclusive advisory lock
-- that ingest takes shared while it checks and stores a batch: a batch either
-- commits before the change or is checked against it (gateway.registry_fence).
CREATE TABLE registry_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO registry_state (version) VALUES (0);
