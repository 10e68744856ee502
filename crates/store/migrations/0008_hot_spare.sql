-- A service may keep a running hot spare on each host that runs it, renamed into the place of
-- a lost instance instead of creating and starting a new container.
ALTER TABLE services ADD COLUMN hot_spare INTEGER NOT NULL DEFAULT 0;
