-- Rolling upgrades: a service keeps the spec it is upgrading from, and each container records
-- the revision it runs, so instances move to the new spec one at a time.
ALTER TABLE services ADD COLUMN previous_spec TEXT;
ALTER TABLE containers ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
UPDATE containers SET revision = (SELECT revision FROM services WHERE services.id = containers.service_id);
