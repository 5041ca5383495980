-- Quarantine bounds (issue 12): evidence is kept whole and forever; garbage is kept as a
-- prefix with the length and SHA-256 of the whole message, and pruned by age and count.
-- Which refusals are evidence is decided by gateway.quarantine.is_evidence, in one place:
-- rows stored before this version are left unclassified (garbage IS NULL) and the first
-- prune classifies them.

ALTER TABLE quarantine
    ADD COLUMN payload_length integer,  -- bytes of the message as received (payload may be a prefix)
    ADD COLUMN payload_sha256 bytea,    -- SHA-256 of the message as received
    ADD COLUMN garbage        boolean;  -- true: bounded garbage; false: evidence; null: not classified yet

UPDATE quarantine SET payload_length = length(payload), payload_sha256 = sha256(payload);

ALTER TABLE quarantine
    ALTER COLUMN payload_length SET NOT NULL,
    ALTER COLUMN payload_sha256 SET NOT NULL;

-- the prune's scans: garbage by age, and the few rows not classified yet
CREATE INDEX quarantine_garbage_seen ON quarantine (last_seen, id) WHERE garbage;
CREATE INDEX quarantine_unclassified ON quarantine (id) WHERE garbage IS NULL;
