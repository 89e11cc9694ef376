-- Optimistic concurrency for realm edits (the admin API's PATCH): every change
-- of a realm row bumps its version; an edit naming an older version is refused.
ALTER TABLE realm ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
