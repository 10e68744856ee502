-- Users, groups, roles per environment, login sessions, API keys and the audit log.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    -- argon2id PHC string; NULL for an account that cannot log in with a password (the
    -- built-in admin, whose credential is the admin key).
    password_hash TEXT,
    admin         INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

CREATE TABLE groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

-- A role in an environment, given to a user or to a group (exactly one of them).
CREATE TABLE memberships (
    id             INTEGER PRIMARY KEY,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    user_id        INTEGER REFERENCES users(id) ON DELETE CASCADE,
    group_id       INTEGER REFERENCES groups(id) ON DELETE CASCADE,
    role           TEXT NOT NULL,              -- owner | member | restricted | read-only
    created_at     TEXT NOT NULL,
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX memberships_user ON memberships(environment_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX memberships_group ON memberships(environment_id, group_id) WHERE group_id IS NOT NULL;

-- Login sessions: only the SHA-256 hash of the token is kept.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- API tokens become API keys of a user: account keys (no environment) act as the user
-- everywhere; environment keys only in theirs. Revoked keys stay listed.
ALTER TABLE api_tokens ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN environment_id INTEGER REFERENCES environments(id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;

-- The built-in admin owns the tokens that existed before users did (the admin token).
INSERT INTO users (name, password_hash, admin, created_at)
    VALUES ('admin', NULL, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
UPDATE api_tokens SET user_id = (SELECT id FROM users WHERE name = 'admin') WHERE user_id IS NULL;

-- Every change made through the API: who, what, when, from where, and how it ended.
-- Names are copied, not referenced, so the log outlives the users and keys it names.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    user_name   TEXT,
    key_name    TEXT,
    client      TEXT NOT NULL,                 -- ui | cli | api
    remote      TEXT,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    environment TEXT,
    target      TEXT,
    status      INTEGER NOT NULL
);
CREATE INDEX audit_log_by_environment ON audit_log(environment, id);
