-- 0004_manual: the endpoints a tenant is checked and synced against, as
-- given by the manual add that created it. '' follows the payload's
-- Settings (Apple's by default); a payload update applied to the tenant
-- clears them.

ALTER TABLE tenants ADD COLUMN token_url    TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN api_base_url TEXT NOT NULL DEFAULT '';
