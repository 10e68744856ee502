-- When agents pull a service's image: missing (Docker's default), always, or never.
ALTER TABLE services ADD COLUMN pull_policy TEXT NOT NULL DEFAULT 'missing';
