-- Load-balancer services keep their ports, targets and rules here (JSON); NULL for containers.
ALTER TABLE services ADD COLUMN lb TEXT;
-- A container leaving a load balancer's targets is first taken out of the balancers and only
-- removed once they have stopped sending it requests.
ALTER TABLE containers ADD COLUMN draining_since TEXT;
