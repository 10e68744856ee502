-- Join tokens are kept sealed (encrypted with a key outside this file) and found by their
-- SHA-256 hash. Existing plaintext tokens are sealed by the control plane when it opens the
-- database with its key (Store::open_sealed), which also fills this column.
ALTER TABLE environments ADD COLUMN join_token_hash TEXT;
CREATE UNIQUE INDEX environments_by_join_token_hash ON environments(join_token_hash);
