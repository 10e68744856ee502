-- What an audit entry needs to read as an action ("ann scaled WEB/web to 4"): the route the
-- request matched (`/v1/stacks/{stack}/services/{service}/scale`), and as JSON the names in its
-- path and the few body fields that say what it asked for (`{"path": {"stack": "WEB",
-- "service": "web"}, "body": {"scale": 4}}`). Entries written before stay without them.
ALTER TABLE audit_log ADD COLUMN route TEXT;
ALTER TABLE audit_log ADD COLUMN detail TEXT;
