-- Which network a service's containers join: managed (the environment's own network, the
-- default, so services made before keep it), bridge, host or none.
ALTER TABLE services ADD COLUMN network TEXT NOT NULL DEFAULT 'managed';
