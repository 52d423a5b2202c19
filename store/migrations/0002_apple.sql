-- 0002_apple: devices and coverage as Apple models them (docs/apple.md).
--
-- Coverage is keyed by (tenant, serial, id): Apple reuses an AppleCare+
-- agreement number as the id of the record on every device it covers, so no
-- record may move between devices. A device's coverage state is active,
-- expired, none or unknown; its latest end date, when its coverage was last
-- read and when it left the organisation are kept beside it. The tenant row
-- counts its devices and coverage records; triggers keep those counters in
-- the transaction that changes the rows, and Store.Check compares them with
-- count(*). Every existing row is kept; 'covered' is recomputed from the
-- records.

CREATE TABLE devices_new (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    serial              TEXT NOT NULL CHECK (serial <> ''),
    apple_id            TEXT NOT NULL DEFAULT '',
    model               TEXT NOT NULL DEFAULT '',
    product_family      TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL DEFAULT '',
    attrs               TEXT CHECK (attrs IS NULL OR json_valid(attrs)),
    coverage_state      TEXT NOT NULL DEFAULT 'unknown'
                        CHECK (coverage_state IN ('active', 'expired', 'none', 'unknown')),
    coverage_end        INTEGER, -- latest end of its records; NULL when none or open-ended
    coverage_checked_at INTEGER, -- last time Apple was asked for its coverage; NULL = never
    seen_at             INTEGER, -- last time a device list returned it
    released_at         INTEGER, -- when it left the organisation; NULL while it is in it
    refresh_rank        INTEGER, -- its place in the coverage refresh order of the pass under way
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, serial)
) STRICT, WITHOUT ROWID;

INSERT INTO devices_new (tenant_id, serial, apple_id, model, product_family, status, attrs,
    coverage_state, coverage_checked_at, seen_at, updated_at)
SELECT tenant_id, serial, apple_id, model, product_family, status, attrs,
    CASE coverage_state WHEN 'covered' THEN 'expired' ELSE coverage_state END,
    CASE coverage_state WHEN 'unknown' THEN NULL ELSE updated_at END,
    updated_at, updated_at
FROM devices;

CREATE TABLE coverage_new (
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    serial               TEXT NOT NULL,
    id                   TEXT NOT NULL CHECK (id <> ''),
    description          TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT '',        -- ACTIVE or INACTIVE
    payment_type         TEXT NOT NULL DEFAULT '',        -- ABE_SUBSCRIPTION, PAID_UP_FRONT, SUBSCRIPTION, NONE
    is_renewable         INTEGER NOT NULL DEFAULT 0 CHECK (is_renewable IN (0, 1)),
    is_canceled          INTEGER NOT NULL DEFAULT 0 CHECK (is_canceled IN (0, 1)),
    agreement_number     TEXT,                            -- NULL when Apple sends null
    contract_cancel_date TEXT,                            -- RFC 3339; NULL when not cancelled
    start_date           TEXT,                            -- RFC 3339; NULL when absent
    end_date             TEXT,                            -- RFC 3339; NULL for open-ended subscriptions
    attrs                TEXT CHECK (attrs IS NULL OR json_valid(attrs)),
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, serial, id),
    FOREIGN KEY (tenant_id, serial) REFERENCES devices_new (tenant_id, serial)
) STRICT, WITHOUT ROWID;

INSERT INTO coverage_new (tenant_id, serial, id, description, status, payment_type, is_renewable,
    is_canceled, agreement_number, contract_cancel_date, start_date, end_date, attrs, updated_at)
SELECT tenant_id, serial, id, description, status,
    coalesce(json_extract(attrs, '$.paymentType'), ''),
    coalesce(json_extract(attrs, '$.isRenewable'), 0) <> 0,
    coalesce(json_extract(attrs, '$.isCanceled'), 0) <> 0,
    json_extract(attrs, '$.agreementNumber'),
    json_extract(attrs, '$.contractCancelDateTime'),
    nullif(start_date, ''), nullif(end_date, ''), attrs, updated_at
FROM coverage;

-- A device that was 'covered' is active when one of its records is ACTIVE
-- and has not ended; otherwise its records are all inactive or ended.
UPDATE devices_new SET coverage_state = 'active'
WHERE coverage_state = 'expired' AND EXISTS (SELECT 1 FROM coverage_new c
    WHERE c.tenant_id = devices_new.tenant_id AND c.serial = devices_new.serial AND c.status = 'ACTIVE'
      AND (c.end_date IS NULL OR c.end_date > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));

-- The latest end date, unless an active record is open-ended (capped where
-- Unix nanoseconds end, in 2262).
UPDATE devices_new SET coverage_end = (SELECT min(max(CAST(strftime('%s', c.end_date) AS INTEGER)), 9223372035) * 1000000000
    FROM coverage_new c WHERE c.tenant_id = devices_new.tenant_id AND c.serial = devices_new.serial)
WHERE NOT EXISTS (SELECT 1 FROM coverage_new c
    WHERE c.tenant_id = devices_new.tenant_id AND c.serial = devices_new.serial
      AND c.status = 'ACTIVE' AND c.end_date IS NULL);

DROP TABLE coverage;
DROP TABLE devices;
ALTER TABLE devices_new RENAME TO devices;
ALTER TABLE coverage_new RENAME TO coverage;

-- The freshness of a tenant reads devices by their last check (released_at
-- in the index so that it answers alone); a sync pass reads them in its
-- refresh order.
CREATE INDEX devices_by_check ON devices (tenant_id, coverage_checked_at, released_at);
CREATE INDEX devices_by_rank ON devices (tenant_id, refresh_rank);

-- Devices are kept for good: one that left the organisation is marked released.
CREATE TRIGGER devices_no_delete BEFORE DELETE ON devices
BEGIN
    SELECT RAISE(ABORT, 'devices are never deleted; released ones are marked');
END;

-- Sync bookkeeping and the tenant's counters.
ALTER TABLE tenants ADD COLUMN sync_pass_started_at INTEGER; -- the pass under way; NULL when none
ALTER TABLE tenants ADD COLUMN sync_listed_at INTEGER;       -- the pass has read the whole device list
ALTER TABLE tenants ADD COLUMN sync_paused_until INTEGER;    -- Apple asked for a wait longer than a sync waits
ALTER TABLE tenants ADD COLUMN device_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN coverage_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN released_count INTEGER NOT NULL DEFAULT 0;
-- Devices still in the organisation, by coverage state.
ALTER TABLE tenants ADD COLUMN active_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN expired_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN none_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN unknown_count INTEGER NOT NULL DEFAULT 0;

UPDATE tenants SET
    device_count   = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id),
    coverage_count = (SELECT count(*) FROM coverage c WHERE c.tenant_id = tenants.id),
    released_count = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id AND d.released_at IS NOT NULL),
    active_count   = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id AND d.released_at IS NULL AND d.coverage_state = 'active'),
    expired_count  = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id AND d.released_at IS NULL AND d.coverage_state = 'expired'),
    none_count     = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id AND d.released_at IS NULL AND d.coverage_state = 'none'),
    unknown_count  = (SELECT count(*) FROM devices d WHERE d.tenant_id = tenants.id AND d.released_at IS NULL AND d.coverage_state = 'unknown');

CREATE TRIGGER devices_count_insert AFTER INSERT ON devices
BEGIN
    UPDATE tenants SET
        device_count   = device_count + 1,
        released_count = released_count + (NEW.released_at IS NOT NULL),
        active_count   = active_count   + (NEW.released_at IS NULL AND NEW.coverage_state = 'active'),
        expired_count  = expired_count  + (NEW.released_at IS NULL AND NEW.coverage_state = 'expired'),
        none_count     = none_count     + (NEW.released_at IS NULL AND NEW.coverage_state = 'none'),
        unknown_count  = unknown_count  + (NEW.released_at IS NULL AND NEW.coverage_state = 'unknown')
    WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER devices_count_update AFTER UPDATE OF tenant_id, coverage_state, released_at ON devices
WHEN OLD.tenant_id <> NEW.tenant_id OR OLD.coverage_state <> NEW.coverage_state
  OR (OLD.released_at IS NULL) <> (NEW.released_at IS NULL)
BEGIN
    UPDATE tenants SET
        device_count   = device_count - 1,
        released_count = released_count - (OLD.released_at IS NOT NULL),
        active_count   = active_count   - (OLD.released_at IS NULL AND OLD.coverage_state = 'active'),
        expired_count  = expired_count  - (OLD.released_at IS NULL AND OLD.coverage_state = 'expired'),
        none_count     = none_count     - (OLD.released_at IS NULL AND OLD.coverage_state = 'none'),
        unknown_count  = unknown_count  - (OLD.released_at IS NULL AND OLD.coverage_state = 'unknown')
    WHERE id = OLD.tenant_id;
    UPDATE tenants SET
        device_count   = device_count + 1,
        released_count = released_count + (NEW.released_at IS NOT NULL),
        active_count   = active_count   + (NEW.released_at IS NULL AND NEW.coverage_state = 'active'),
        expired_count  = expired_count  + (NEW.released_at IS NULL AND NEW.coverage_state = 'expired'),
        none_count     = none_count     + (NEW.released_at IS NULL AND NEW.coverage_state = 'none'),
        unknown_count  = unknown_count  + (NEW.released_at IS NULL AND NEW.coverage_state = 'unknown')
    WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER coverage_count_insert AFTER INSERT ON coverage
BEGIN
    UPDATE tenants SET coverage_count = coverage_count + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER coverage_count_delete AFTER DELETE ON coverage
BEGIN
    UPDATE tenants SET coverage_count = coverage_count - 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER coverage_count_update AFTER UPDATE OF tenant_id ON coverage
WHEN OLD.tenant_id <> NEW.tenant_id
BEGIN
    UPDATE tenants SET coverage_count = coverage_count - 1 WHERE id = OLD.tenant_id;
    UPDATE tenants SET coverage_count = coverage_count + 1 WHERE id = NEW.tenant_id;
END;
