-- API key names are unique per user, not across all users: a name taken by someone else is not
-- taken from you, and refusing it would tell you that someone has a key of that name. SQLite
-- cannot drop a UNIQUE constraint, so the table is rebuilt with the same columns in the same
-- order, the same foreign keys, and secrets still unique (two keys with one secret would be
-- one credential). Every key has had an owner since 0006; one without would be the admin's.
CREATE TABLE api_tokens_new (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    created_at     TEXT NOT NULL,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    environment_id INTEGER REFERENCES environments(id) ON DELETE CASCADE,
    revoked_at     TEXT,
    UNIQUE (user_id, name)
);
INSERT INTO api_tokens_new (id, name, secret_hash, created_at, user_id, environment_id, revoked_at)
    SELECT id, name, secret_hash, created_at, COALESCE(user_id, (SELECT id FROM users WHERE name = 'admin')), environment_id, revoked_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
