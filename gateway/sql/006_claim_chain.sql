-- No double counting (issue 14): which claims are live, on which assets, for which period.
-- Filled when a claim is filed; rows of earlier claims are filled from their entry bytes the
-- first time a claim is filed after this migration (gateway.claims.index_claims).
ALTER TABLE claims ADD COLUMN leaf_hash bytea UNIQUE;      -- SHA-256(0x00 || entry): how claims name each other
ALTER TABLE claims ADD COLUMN period_start_ms bigint;
ALTER TABLE claims ADD COLUMN period_end_ms bigint;
ALTER TABLE claims ADD COLUMN voided_by text;              -- null while live; 'withdrawn' or 'superseded by claim N'
ALTER TABLE claims ADD COLUMN void_reason text;            -- the issuer's reason for a withdrawal

-- The assets of each claim: the refusal of an overlapping claim and the links to the latest
-- live claim per asset are found through it.
CREATE TABLE claim_assets (
    asset_id text NOT NULL,
    claim_id bigint NOT NULL REFERENCES claims,
    PRIMARY KEY (asset_id, claim_id)
);
