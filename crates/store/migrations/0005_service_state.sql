-- A stopped service keeps its containers, stopped; starting it again starts the same containers.
ALTER TABLE services ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
