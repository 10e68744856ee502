-- A container stopped on its own (`corral container stop`), kept stopped until started again,
-- and a restart asked for: the agent restarts the container whenever the generation it last
-- applied differs, so a restart is carried by the desired set and happens once.
ALTER TABLE containers ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN restart_generation INTEGER NOT NULL DEFAULT 0;
-- A container removed on request is replaced by a new one, also on the same host: its record
-- gets a new incarnation, which is part of the container's spec (0: the first).
ALTER TABLE containers ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;

-- Control-plane settings an administrator changes at run time: one row.
-- advertise_url: the URL hosts reach this control plane at, for join commands (NULL: from the
-- command line, or this machine's address).
CREATE TABLE settings (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    advertise_url TEXT,
    updated_at    TEXT NOT NULL
);
