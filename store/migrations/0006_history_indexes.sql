-- 0006_history_indexes: the reads the agent makes on every change (the
-- status it rebuilds after each event, the imports a rotation looks at)
-- seek instead of reading the history. Credentials, imports and rotations
-- keep a row for every rotation ever made, so without these each read
-- grew with the tenant's age (docs/store.md, "Indexes").

-- The credentials in use (status, deciding an import): the active and
-- previous ones, oldest first.
CREATE INDEX credentials_in_use ON credentials (created_at, id) WHERE state IN ('active', 'previous');

-- The imports still waiting (status), oldest first.
CREATE INDEX imports_waiting ON imports (created_at, id)
    WHERE state IN ('pending-unlock', 'needs-target', 'failed', 'applying');

-- A tenant's imports in a state (a rotation's superseded and newer imports).
CREATE INDEX imports_by_tenant ON imports (tenant_id, state, created_at);

-- The last rotation (status).
CREATE INDEX rotations_by_start ON rotations (started_at);

-- The rotation that staged a credential (confirm, roll back, check).
CREATE INDEX rotations_by_target ON rotations (to_credential_id);
