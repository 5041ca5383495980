-- An asset belongs to the installer who enrolled its first device (issue 14, review): another
-- installer's devices on it are refused (403 not_your_asset), an operator may enrol on any asset.
-- Filled here from the devices already enrolled: the earliest enrolment of each asset.
ALTER TABLE asset_identity ADD COLUMN installer text;
INSERT INTO asset_identity (asset_id) SELECT DISTINCT asset_id FROM devices ON CONFLICT DO NOTHING;
UPDATE asset_identity a
SET installer = (
    SELECT d.installer FROM devices d WHERE d.asset_id = a.asset_id ORDER BY d.enrolled_at, d.device_id LIMIT 1
);
