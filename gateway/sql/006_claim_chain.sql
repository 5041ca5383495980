-- No double counting (issue 14): which claims are live, on which assets, for which period.
-- Filled when a claim is filed; rows of earlier claims are filled from their entry bytes the
-- first time a claim is filed after this migration (gateway.claims.index_claims).
ALTER TABLE claims ADD COLUMN leaf_hash bytea UNIQUE;      -- SHA-256(0x00 || entry): how claims name each other
ALTER TABLE claims ADD COLUMN period_start_ms bigint;
ALTER TABLE claims ADD COLUMN period_end_ms bigint;
ALTER TABLE claims ADD COLUMN voided_by text;              -- null while live; 'withdrawn' or 'superseded by claim N'
ALTER TABLE claims ADD COLUMN void_reason text;            -- the issuer's reason for a withdrawal
ALTER TABLE claims ADD COLUMN supersedes bytea;            -- leaf hash of the claim this one supersedes
CREATE INDEX claims_supersedes ON claims (supersedes) WHERE supersedes IS NOT NULL;

-- The assets of each claim: the refusal of an overlapping claim and the links to the latest
-- live claim per asset are found through it.
CREATE TABLE claim_assets (
    asset_id text NOT NULL,
    claim_id bigint NOT NULL REFERENCES claims,
    PRIMARY KEY (asset_id, claim_id)
);

-- Withdrawals, by the leaf hash of the claim withdrawn: a bundle carries those of its chain.
CREATE TABLE claim_withdrawals (
    claim_hash bytea PRIMARY KEY,            -- leaf hash of the claim withdrawn (at most one withdrawal)
    entry      bytea NOT NULL,               -- the withdrawal entry, exactly as logged
    entry_hash bytea NOT NULL,               -- sha256(entry): finds its log index in entries
    log_index  bigint                        -- null until found in entries
);
-- Finding a logged withdrawal entry by its hash.
CREATE INDEX entries_withdrawal_hash ON entries (sha256(data)) WHERE kind = 6;
