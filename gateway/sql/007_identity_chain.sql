-- Each asset's identity entries form a chain (issue 14): the head is the leaf hash of the latest
-- enrolment, key rotation or revocation of a device of the asset, logged or queued; the next one
-- names it (asset_link) and a claim names it per asset. Filled here from what is already there.
CREATE TABLE asset_identity (
    asset_id text PRIMARY KEY,
    head     bytea                           -- SHA-256(0x00 || entry); null: no identity entry yet
);
INSERT INTO asset_identity (asset_id, head)
SELECT DISTINCT ON (d.asset_id) d.asset_id, sha256('\x00'::bytea || x.data)
FROM (
    SELECT idx AS ord, data, device_id FROM entries WHERE kind IN (1, 3, 4)
    UNION ALL
    SELECT (1::bigint << 62) + id, data, device_id FROM pending_entries WHERE kind IN (1, 3, 4)
) x
JOIN devices d ON d.device_id = x.device_id
ORDER BY d.asset_id, x.ord DESC;
