//! The `io.corral.*` labels on every container Corral creates.
//!
//! They are enough to rebuild stacks, services, names and scale if the control plane's
//! database is lost: the engines themselves remember what Corral put there.

/// Present (value `true`) on every container Corral manages; the agent touches no other.
pub const MANAGED: &str = "io.corral.managed";
pub const ENVIRONMENT: &str = "io.corral.environment";
pub const STACK: &str = "io.corral.stack";
pub const SERVICE: &str = "io.corral.service";
/// The instance number N in the container name `STACK-SERVICE-N`.
pub const INSTANCE: &str = "io.corral.instance";
/// The service's spec revision the container was created from.
pub const REVISION: &str = "io.corral.revision";
/// Hash of the [`crate::ContainerSpec`]; the agent recreates a container whose hash differs.
pub const SPEC_HASH: &str = "io.corral.spec-hash";
/// The service's spec as JSON, so a control plane that lost its database can rebuild the
/// service exactly — and with the same spec hash, so adoption restarts nothing.
pub const SERVICE_SPEC: &str = "io.corral.service-spec";
/// `true` on a hot spare: a running copy of a service's container, kept on a host so a lost
/// instance is replaced by renaming the spare instead of creating and starting a new one.
pub const SPARE: &str = "io.corral.spare";
/// Hash of the spec without what makes it one instance (see
/// [`crate::ContainerSpec::template_hash`]); a promoted spare matches the instance by it.
pub const TEMPLATE_HASH: &str = "io.corral.template-hash";

/// Set on a container made anew, on request, in place of one removed through the control
/// plane (`corral container rm`): a new value is a new spec hash, so the agent creates a fresh
/// container even when the replacement lands on the same host with the same spec. Adoption reads
/// it back, so a rebuilt database recreates nothing.
pub const INCARNATION: &str = "io.corral.incarnation";

/// Name suffix of a service's hot spare: `STACK-SERVICE-spare`.
pub const SPARE_SUFFIX: &str = "spare";
