-- How long a service's containers wait on a disconnected host before they are placed elsewhere.
ALTER TABLE services ADD COLUMN reschedule_after_secs INTEGER NOT NULL DEFAULT 60;
-- Set on services rebuilt from container labels after the database was lost: until then the
-- control plane only collects instances from re-joining hosts and neither adds nor removes any.
ALTER TABLE services ADD COLUMN adopting_until TEXT;
