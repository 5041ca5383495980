-- The sequencer's lease (gateway/lease.py): which session may write the log, until when,
-- under which epoch. It replaces the session advisory lock, which a session the server
-- never sees die (a partition) would hold forever.
CREATE TABLE sequencer_lease (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    holder        text NOT NULL,           -- the gateway process, for people reading it
    epoch         bigint NOT NULL,         -- bumped by every acquisition: the fence
    expires_at    timestamptz NOT NULL,    -- server time (clock_timestamp())
    backend_pid   integer,                 -- the holder's session: the lease is bound to it
    backend_start timestamptz
);
INSERT INTO sequencer_lease (holder, epoch, expires_at) VALUES ('', 0, '-infinity');
