-- Whether a reading's clock was unsynchronised (status bit 0x0004): such a reading proves no
-- edge of a claim period (attest_core.evaluation.full_seqs), so the full selection skips it as
-- an edge. Filled by ingest; here from the stored envelopes, by the payload layout (protocol.md
-- section 2): envelope version, 8-byte key id, u16 payload length, then the payload: version,
-- text8 device_id, text8 asset_id, seq, time_ms, energy_mwh (u64 each), has_power, [power_mw],
-- status (u16). Tested against the core's decoder (tests/gateway/test_reading_sync.py).
ALTER TABLE readings ADD COLUMN unsynced boolean NOT NULL DEFAULT false;
UPDATE readings SET unsynced = true
WHERE (get_byte(envelope,
           40 + get_byte(envelope, 12) + get_byte(envelope, 13 + get_byte(envelope, 12))
           + 8 * get_byte(envelope, 38 + get_byte(envelope, 12) + get_byte(envelope, 13 + get_byte(envelope, 12))))
       & 4) <> 0;
