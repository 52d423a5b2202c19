-- 0002_apple: a placeholder so that versions have no gap on this branch; the
-- Apple coverage migration of the same number replaces it at merge.
SELECT 1;
