-- One actoracl row per (realm_id, from_type, to_type) (issue 10, defect 4).
--
-- Until now every Register appended its rows and the first row of a triple
-- won, so rows piled up and a later DENY was ignored. A row now keeps its two
-- sources apart: what an operator set with `actrix acl add` (operator_access)
-- and what the newest registration of to_type declared (actor_access, replaced
-- by the next registration of that type). `access` is the decision: DENY if
-- either source denies, else ALLOW.
CREATE TABLE actoracl_one (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    realm_id INTEGER NOT NULL,
    from_type TEXT NOT NULL,
    to_type TEXT NOT NULL,
    access INTEGER NOT NULL,
    operator_access INTEGER,
    actor_access INTEGER,
    CHECK (operator_access IS NOT NULL OR actor_access IS NOT NULL)
);

-- Old rows do not say who wrote them. A triple with any DENY row keeps DENY
-- (whatever the row order) as an operator rule, so no registration can lift
-- it; a triple with only ALLOW rows keeps ALLOW as declared by a registration,
-- so the next registration of its to_type replaces it. Each triple keeps the
-- id of its oldest row with that decision. (The CASE expressions keep this
-- file valid PostgreSQL, where a comparison is a boolean, not 0/1.)
INSERT INTO actoracl_one
    (rowid, realm_id, from_type, to_type, access, operator_access, actor_access)
SELECT
    (SELECT MIN(old.rowid) FROM actoracl AS old
     WHERE old.realm_id = d.realm_id
       AND old.from_type = d.from_type
       AND old.to_type = d.to_type
       AND (CASE WHEN old.access != 0 THEN 1 ELSE 0 END) = d.access),
    d.realm_id,
    d.from_type,
    d.to_type,
    d.access,
    CASE WHEN d.access = 0 THEN 0 END,
    CASE WHEN d.access = 1 THEN 1 END
FROM (
    SELECT realm_id, from_type, to_type,
        MIN(CASE WHEN access != 0 THEN 1 ELSE 0 END) AS access
    FROM actoracl
    GROUP BY realm_id, from_type, to_type
) AS d;

DROP TABLE actoracl;

ALTER TABLE actoracl_one RENAME TO actoracl;

CREATE UNIQUE INDEX actoracl_triple ON actoracl (realm_id, from_type, to_type);

CREATE INDEX actoracl_target ON actoracl (realm_id, to_type);
