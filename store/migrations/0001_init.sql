-- 0001_init: the whole rekey schema. Times are INTEGER Unix nanoseconds (UTC),
-- NULL where "never". Every rule the rotation depends on is enforced here, not
-- only in Go: a bug or a stray sqlite3 shell cannot commit a broken state.

PRAGMA application_id = 1919640953; -- 'rkey'

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY CHECK (id LIKE 'ten\_%' ESCAPE '\'),
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('business.api', 'school.api')),
    created_at   INTEGER NOT NULL,
    last_sync_at INTEGER,
    sync_cursor  TEXT NOT NULL DEFAULT '',
    sync_error   TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE imports (
    id            TEXT PRIMARY KEY CHECK (id <> ''),
    hash          TEXT NOT NULL CHECK (hash <> ''),
    source        TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    intent        TEXT NOT NULL CHECK (intent IN ('add', 'update', 'auto')),
    target        TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL CHECK (state IN ('pending-unlock', 'needs-target', 'applying',
                      'applied', 'already-present', 'failed', 'withdrawn', 'superseded', 'dismissed')),
    reason        TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    tenant_id     TEXT REFERENCES tenants (id),
    credential_id TEXT REFERENCES credentials (id) DEFERRABLE INITIALLY DEFERRED,
    client_id     TEXT NOT NULL DEFAULT '',
    key_id        TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- Always empty. A credential in the transient 'swapping' state (used only
-- inside Rollback's transaction) points here, so a COMMIT that would leave
-- one behind fails the deferred foreign key check.
CREATE TABLE never (id INTEGER PRIMARY KEY) STRICT;

CREATE TABLE credentials (
    id           TEXT PRIMARY KEY CHECK (id LIKE 'cred\_%' ESCAPE '\'),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    client_id    TEXT NOT NULL CHECK (client_id <> ''),
    key_id       TEXT NOT NULL CHECK (key_id <> ''),
    scope        TEXT NOT NULL CHECK (scope IN ('business.api', 'school.api')),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'previous', 'retired', 'failed', 'swapping')),
    origin       TEXT NOT NULL CHECK (origin IN ('managed', 'local')),
    import_id    TEXT REFERENCES imports (id),
    sealed_key   BLOB,
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at   INTEGER,
    last_auth_at INTEGER,
    swap_guard   INTEGER REFERENCES never (id) DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (tenant_id, id),
    CHECK (state NOT IN ('retired', 'failed') OR sealed_key IS NULL),
    CHECK ((state = 'swapping') = (swap_guard IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX credentials_one_active   ON credentials (tenant_id) WHERE state = 'active';
CREATE UNIQUE INDEX credentials_one_previous ON credentials (tenant_id) WHERE state = 'previous';
CREATE UNIQUE INDEX credentials_one_pending  ON credentials (tenant_id) WHERE state = 'pending';

CREATE TRIGGER credentials_state_transition BEFORE UPDATE OF state ON credentials
WHEN OLD.state <> NEW.state AND NOT (
       (OLD.state = 'pending'  AND NEW.state IN ('active', 'failed'))
    OR (OLD.state = 'active'   AND NEW.state IN ('previous', 'swapping'))
    OR (OLD.state = 'swapping' AND NEW.state = 'previous')
    OR (OLD.state = 'previous' AND NEW.state IN ('active', 'retired')))
BEGIN
    SELECT RAISE(ABORT, 'illegal credential state transition');
END;

CREATE TRIGGER credentials_key_stays_wiped BEFORE UPDATE OF sealed_key ON credentials
WHEN OLD.sealed_key IS NULL AND NEW.sealed_key IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a wiped key cannot be restored');
END;

CREATE TRIGGER credentials_fixed_identity BEFORE UPDATE OF id, tenant_id, client_id, key_id ON credentials
WHEN OLD.id <> NEW.id OR OLD.tenant_id <> NEW.tenant_id OR OLD.client_id <> NEW.client_id OR OLD.key_id <> NEW.key_id
BEGIN
    SELECT RAISE(ABORT, 'a credential cannot change identity or tenant');
END;

CREATE TABLE rotations (
    id                 TEXT PRIMARY KEY CHECK (id LIKE 'rot\_%' ESCAPE '\'),
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    import_id          TEXT REFERENCES imports (id),
    from_credential_id TEXT NOT NULL,
    to_credential_id   TEXT NOT NULL,
    step               TEXT NOT NULL CHECK (step IN ('staged', 'validated', 'cutover', 'confirmed', 'failed', 'rolled-back')),
    reason             TEXT NOT NULL DEFAULT '',
    started_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, from_credential_id) REFERENCES credentials (tenant_id, id),
    FOREIGN KEY (tenant_id, to_credential_id) REFERENCES credentials (tenant_id, id),
    CHECK (from_credential_id <> to_credential_id)
) STRICT;

CREATE UNIQUE INDEX rotations_one_unfinished ON rotations (tenant_id) WHERE step IN ('staged', 'validated');

CREATE TRIGGER rotations_step_transition BEFORE UPDATE OF step ON rotations
WHEN OLD.step <> NEW.step AND NOT (
       (OLD.step = 'staged'      AND NEW.step IN ('validated', 'failed'))
    OR (OLD.step = 'validated'   AND NEW.step IN ('cutover', 'failed'))
    OR (OLD.step = 'cutover'     AND NEW.step IN ('confirmed', 'rolled-back'))
    OR (OLD.step = 'rolled-back' AND NEW.step = 'cutover'))
BEGIN
    SELECT RAISE(ABORT, 'illegal rotation step');
END;

CREATE TABLE devices (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    serial         TEXT NOT NULL CHECK (serial <> ''),
    apple_id       TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    product_family TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL DEFAULT '',
    attrs          TEXT CHECK (attrs IS NULL OR json_valid(attrs)),
    coverage_state TEXT NOT NULL DEFAULT 'unknown' CHECK (coverage_state IN ('unknown', 'none', 'covered')),
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, serial)
) STRICT, WITHOUT ROWID;

CREATE TABLE coverage (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL CHECK (id <> ''),
    serial      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT '',
    start_date  TEXT NOT NULL DEFAULT '',
    end_date    TEXT NOT NULL DEFAULT '',
    attrs       TEXT CHECK (attrs IS NULL OR json_valid(attrs)),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, serial) REFERENCES devices (tenant_id, serial)
) STRICT, WITHOUT ROWID;

CREATE INDEX coverage_by_serial ON coverage (tenant_id, serial);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    time          INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind <> ''),
    tenant_id     TEXT REFERENCES tenants (id),
    import_id     TEXT, -- free text: an event may name an entry that was refused before it was recorded
    credential_id TEXT REFERENCES credentials (id),
    rotation_id   TEXT REFERENCES rotations (id),
    message       TEXT NOT NULL,
    fields        TEXT CHECK (fields IS NULL OR json_valid(fields))
) STRICT;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;

-- History is never deleted: tenants, credentials and rotations are kept.
CREATE TRIGGER tenants_no_delete BEFORE DELETE ON tenants
BEGIN
    SELECT RAISE(ABORT, 'tenants are never deleted');
END;

CREATE TRIGGER credentials_no_delete BEFORE DELETE ON credentials
BEGIN
    SELECT RAISE(ABORT, 'credentials are never deleted; they are retired');
END;

CREATE TRIGGER rotations_no_delete BEFORE DELETE ON rotations
BEGIN
    SELECT RAISE(ABORT, 'the rotation journal is never deleted');
END;
