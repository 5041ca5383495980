-- The gateway's schema, version 1.

-- Devices and their keys (the registry's state, for ingest).
CREATE TABLE devices (
    device_id      text PRIMARY KEY,
    asset_id       text NOT NULL,
    asset_kind     smallint NOT NULL,
    rated_power_w  bigint NOT NULL,
    lat_e6         integer,
    lon_e6         integer,
    statement      bytea NOT NULL,          -- the enrolment statement, as signed
    installer      text NOT NULL,
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    last_valid_seq bigint,                  -- set by a revocation
    -- the sequencer's position in the device's chain:
    logged_seq     bigint NOT NULL DEFAULT 0,
    logged_hash    bytea NOT NULL,          -- what the next reading must carry as prev_hash
    logged_index   bigint                   -- log index of reading logged_seq
);
CREATE INDEX devices_asset ON devices (asset_id);

CREATE TABLE device_keys (
    device_id  text NOT NULL REFERENCES devices,
    key_id     bytea NOT NULL,
    public_key bytea NOT NULL,
    from_seq   bigint NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

-- Accepted readings: signature checked; log_index is set once the sequencer logs them.
CREATE TABLE readings (
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    asset_id     text NOT NULL,
    time_ms      bigint NOT NULL,
    energy_mwh   bigint NOT NULL,
    payload_hash bytea NOT NULL,
    envelope     bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    log_index    bigint,
    PRIMARY KEY (device_id, seq)
);
CREATE UNIQUE INDEX readings_log_index ON readings (log_index);
CREATE INDEX readings_pending ON readings (device_id, seq) WHERE log_index IS NULL;
CREATE INDEX readings_asset_time ON readings (asset_id, time_ms);

-- Identity and claim entries waiting for the sequencer, and logged ones.
CREATE TABLE pending_entries (
    id         bigserial PRIMARY KEY,
    kind       smallint NOT NULL,
    data       bytea NOT NULL,
    device_id  text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE entries (
    idx       bigint PRIMARY KEY,
    kind      smallint NOT NULL,
    data      bytea NOT NULL,
    device_id text,
    logged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_device ON entries (device_id) WHERE device_id IS NOT NULL;

-- The Merkle tree: every complete perfect subtree, level 0 being the leaves.
CREATE TABLE log_nodes (
    level smallint NOT NULL,
    idx   bigint NOT NULL,
    hash  bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE log_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size      bigint NOT NULL
);
INSERT INTO log_state (size) VALUES (0);

CREATE TABLE checkpoints (
    id        bigserial PRIMARY KEY,
    size      bigint NOT NULL,
    root_hash bytea NOT NULL,
    note      text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoints_size ON checkpoints (size);

CREATE TABLE cosignatures (
    checkpoint_id bigint NOT NULL REFERENCES checkpoints,
    witness       text NOT NULL,
    line          text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkpoint_id, witness)
);

-- Everything refused, with why. Identical refusals are counted, not repeated.
CREATE TABLE quarantine (
    id          bigserial PRIMARY KEY,
    fingerprint bytea NOT NULL UNIQUE,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    count       bigint NOT NULL DEFAULT 1,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    device_id   text,
    seq         bigint
);
CREATE INDEX quarantine_reason ON quarantine (reason);
CREATE INDEX quarantine_device ON quarantine (device_id) WHERE device_id IS NOT NULL;

-- Devices owed a receipt at the next checkpoint (e.g. after they re-sent logged readings).
CREATE TABLE receipt_due (
    device_id text PRIMARY KEY
);
