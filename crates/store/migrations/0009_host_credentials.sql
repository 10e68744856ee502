-- Each host's own credential, issued on its first join; only its SHA-256 is kept.
-- A revoked credential stays, so its agent is told it was revoked rather than unknown.
ALTER TABLE hosts ADD COLUMN credential_hash TEXT;
ALTER TABLE hosts ADD COLUMN revoked_at TEXT;
