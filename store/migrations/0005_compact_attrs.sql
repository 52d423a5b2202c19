-- 0005_compact_attrs: stored attributes are compact JSON, so that a device
-- page can send them as they are (docs/store.md, "Attributes"). They were
-- valid JSON already (a CHECK on both tables); the store compacts them on
-- every write from now on, and this does the same for the rows written
-- before it. json() is SQLite's minified form of valid JSON; only rows it
-- changes are written.

UPDATE devices SET attrs = json(attrs) WHERE attrs IS NOT NULL AND attrs <> json(attrs);

UPDATE coverage SET attrs = json(attrs) WHERE attrs IS NOT NULL AND attrs <> json(attrs);
