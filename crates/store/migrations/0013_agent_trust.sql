-- What the control plane refused from a host's agent, and why (a container whose labels fail
-- the API's rules, a report too big to keep), shown with the host until its next hello.
ALTER TABLE hosts ADD COLUMN problem TEXT;

-- SHA-256 of the join token a host joined with, so hosts are counted per token value: rotating
-- the token starts a new count (see --max-hosts-per-join-token).
ALTER TABLE hosts ADD COLUMN join_token_hash TEXT;
