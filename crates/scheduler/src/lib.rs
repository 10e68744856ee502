//! Placement of service instances onto hosts, as a pure function.
//!
//! The server hands [`plan`] a narrow view of the cluster ([`HostView`]s) and a
//! description of one service ([`ServiceRequest`]); it gets back a [`Plan`] that
//! says which instances to start (or move) where, which to delete, and which
//! could not be placed and why. Nothing here does I/O, reads clocks or uses
//! randomness, so the same input always gives the same plan, and the whole
//! scheduler is tested with in-memory hosts (the model is HashiCorp Nomad's
//! `scheduler/` package).
//!
//! # Placement rules
//!
//! * **Numbering.** A service of scale `N` has instances `1..=N`.
//! * **Scale down.** Every existing instance numbered above `N` goes to
//!   [`Plan::remove`] (highest number first). Instance number `0` is never
//!   valid and is removed too.
//! * **Keep.** An existing instance numbered `1..=N` stays where it is when its
//!   host is present in the view, schedulable (an ineligible, i.e. deactivated,
//!   host keeps its instances), and still satisfies every constraint. Kept instances are not mentioned in the plan at all.
//!   One exception: if the service publishes host ports and two existing
//!   instances sit on the same host (which the port rule forbids), the lower
//!   number is kept and the others are re-placed.
//! * **Place.** Missing numbers in `1..=N`, instances with no host (`None`), and
//!   instances whose host is gone, unschedulable or no longer matches the
//!   constraints are placed, in ascending instance order. A re-placed instance
//!   keeps its number; it appears in [`Plan::place`] with its new host.
//! * **Feasible hosts.** A host can take an instance when it is schedulable
//!   and not ineligible, matches all constraints, and none of the service's host ports is in use
//!   on it — neither by other services ([`HostView::used_host_ports`]) nor by
//!   an instance of this service already there (kept or placed earlier in the
//!   same plan): instances of one service that publish a port never share a
//!   host. Ports conflict only when number *and* protocol are equal. A service on the host's
//!   own network ([`ServiceRequest::one_per_host`]) spreads the same way without naming ports.
//! * **Spread.** Among feasible hosts the one with the fewest instances of this
//!   service wins (kept + placed so far in this plan); ties go to the host
//!   with the fewest total containers ([`HostView::containers`] + instances
//!   placed on it in this plan), then the lowest host name, then the lowest id.
//!   Starting from nothing, per-host counts therefore never differ by more
//!   than one when nothing restricts placement.
//! * **Unplaced.** When no host is feasible the instance goes to
//!   [`Plan::unplaced`] with a human-readable reason naming the first obstacle
//!   found: no hosts at all, no schedulable host, a constraint (or the
//!   combination of constraints) that no schedulable host satisfies, or the
//!   host ports. The planner never panics.
//!
//! # Constraints
//!
//! Written `host.LABEL=VALUE` (the host's label `LABEL` equals `VALUE`) or
//! `host.LABEL!=VALUE` (the label is absent or has another value), see
//! [`Constraint`]. Constraints are matched against [`HostView::labels`].
//!
//! If hosts share an id, the first one in the slice is used and the rest are
//! ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// How many hosts an unplaced reason lists before summarising the rest.
const REASON_HOST_LIMIT: usize = 5;

/// A host, as far as placement is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostView {
    /// Stable host id.
    pub id: String,
    /// Human name, used in reasons and as a tie-breaker.
    pub name: String,
    /// Host labels that constraints are matched against.
    pub labels: BTreeMap<String, String>,
    /// Active (its agent is connected): may keep its instances, and take new ones unless
    /// [`HostView::ineligible`].
    pub schedulable: bool,
    /// Deactivated by an operator (Nomad's "ineligible"): keeps the instances it has but takes
    /// no new ones.
    pub ineligible: bool,
    /// Total containers on the host, all services.
    pub containers: usize,
    /// Published host ports in use by OTHER services' containers.
    pub used_host_ports: BTreeSet<(u16, Protocol)>,
}

impl HostView {
    /// May take new instances.
    fn eligible(&self) -> bool {
        self.schedulable && !self.ineligible
    }

    /// The name shown in reasons: the host name, or its id when it has none.
    fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A host-label constraint: `host.LABEL=VALUE` or `host.LABEL!=VALUE`.
///
/// `equal == true` matches hosts whose label `key` is exactly `value`;
/// `equal == false` matches hosts whose label `key` is absent or different.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Constraint {
    /// Label key, e.g. `"zone"`.
    pub key: String,
    /// Label value to compare with.
    pub value: String,
    /// `true`: `host.key=value`; `false`: `host.key!=value`.
    pub equal: bool,
}

impl Constraint {
    /// `host.key=value`.
    pub fn is(key: impl Into<String>, value: impl Into<String>) -> Self {
        Constraint { key: key.into(), value: value.into(), equal: true }
    }

    /// `host.key!=value`.
    pub fn is_not(key: impl Into<String>, value: impl Into<String>) -> Self {
        Constraint { key: key.into(), value: value.into(), equal: false }
    }

    /// Whether a host with these labels satisfies the constraint.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let same = labels.get(&self.key).is_some_and(|v| *v == self.value);
        same == self.equal
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.equal { "=" } else { "!=" };
        write!(f, "host.{}{}{}", self.key, op, self.value)
    }
}

/// What was wrong with a constraint string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintParseErrorKind {
    /// The text does not start with `host.`.
    MissingPrefix,
    /// There is neither `=` nor `!=`.
    MissingOperator,
    /// Nothing between `host.` and the operator.
    EmptyLabel,
    /// The label contains a character that would make the text ambiguous (`!`).
    InvalidLabel,
    /// Nothing after the operator.
    EmptyValue,
}

/// Error returned by `Constraint::from_str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintParseError {
    input: String,
    kind: ConstraintParseErrorKind,
}

impl ConstraintParseError {
    /// The text that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> ConstraintParseErrorKind {
        self.kind
    }
}

impl fmt::Display for ConstraintParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = match self.kind {
            ConstraintParseErrorKind::MissingPrefix => "it must start with \"host.\"",
            ConstraintParseErrorKind::MissingOperator => "no \"=\" or \"!=\" operator",
            ConstraintParseErrorKind::EmptyLabel => "the label is empty",
            ConstraintParseErrorKind::InvalidLabel => "the label must not contain \"!\"",
            ConstraintParseErrorKind::EmptyValue => "the value is empty",
        };
        write!(f, "invalid constraint {:?}: {problem}; use host.LABEL=VALUE or host.LABEL!=VALUE", self.input)
    }
}

impl std::error::Error for ConstraintParseError {}

impl FromStr for Constraint {
    type Err = ConstraintParseError;

    /// Parses `host.LABEL=VALUE` or `host.LABEL!=VALUE`. The split is at the
    /// first `=`, so values may contain `=`; labels may not contain `!`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |kind| ConstraintParseError { input: s.to_string(), kind };
        let rest = s.strip_prefix("host.").ok_or_else(|| err(ConstraintParseErrorKind::MissingPrefix))?;
        let eq = rest.find('=').ok_or_else(|| err(ConstraintParseErrorKind::MissingOperator))?;
        let (label, equal) = match rest[..eq].strip_suffix('!') {
            Some(label) => (label, false),
            None => (&rest[..eq], true),
        };
        let value = &rest[eq + 1..];
        if label.is_empty() {
            return Err(err(ConstraintParseErrorKind::EmptyLabel));
        }
        if label.contains('!') {
            return Err(err(ConstraintParseErrorKind::InvalidLabel));
        }
        if value.is_empty() {
            return Err(err(ConstraintParseErrorKind::EmptyValue));
        }
        Ok(Constraint { key: label.to_string(), value: value.to_string(), equal })
    }
}

/// One service, as far as placement is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRequest {
    /// Desired number of instances; instances are numbered `1..=scale`.
    pub scale: u32,
    /// Every placed instance's host must satisfy all of these.
    pub constraints: Vec<Constraint>,
    /// Published host ports each instance needs.
    pub host_ports: Vec<(u16, Protocol)>,
    /// Every instance on a host of its own, ports or not: a service on the host's own network
    /// stack, whose instances would otherwise share every port they listen on.
    pub one_per_host: bool,
    /// Existing instance number -> host id it is placed on
    /// (`None` = not placed, or its host was lost).
    pub instances: BTreeMap<u32, Option<String>>,
    /// Instance number -> host id to place it elsewhere than, when any other host fits.
    /// A container deleted by hand is replaced on another host, as an operator expects.
    pub avoid: BTreeMap<u32, String>,
}

/// What to change so the service matches its request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Instance number -> host id, for new or moved instances, ascending by instance.
    pub place: Vec<(u32, String)>,
    /// Surplus instance numbers to delete, highest first.
    pub remove: Vec<u32>,
    /// Instances that need a host but no host can take, ascending by instance.
    pub unplaced: Vec<Unplaced>,
}

/// An instance that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unplaced {
    /// The instance number.
    pub instance: u32,
    /// Human text saying why no host fits.
    pub reason: String,
}

/// Computes the placement plan for one service. Pure and deterministic; see
/// the crate docs for the rules.
///
/// ```
/// use corral_scheduler::{plan, HostView, ServiceRequest};
///
/// let host = |id: &str| HostView { id: id.into(), name: id.into(), schedulable: true, ..Default::default() };
/// let hosts = [host("h1"), host("h2")];
/// let req = ServiceRequest { scale: 3, constraints: vec!["host.zone!=dmz".parse().unwrap()], ..Default::default() };
/// let p = plan(&hosts, &req);
/// assert_eq!(p.place, [(1, "h1".to_string()), (2, "h2".to_string()), (3, "h1".to_string())]);
/// assert!(p.remove.is_empty() && p.unplaced.is_empty());
/// ```
pub fn plan(hosts: &[HostView], req: &ServiceRequest) -> Plan {
    // First host wins on duplicate ids; candidates are walked in (name, id) order.
    let mut by_id: BTreeMap<&str, &HostView> = BTreeMap::new();
    for h in hosts {
        by_id.entry(h.id.as_str()).or_insert(h);
    }
    let mut ordered: Vec<&HostView> = by_id.values().copied().collect();
    ordered.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));

    let ports: BTreeSet<(u16, Protocol)> = req.host_ports.iter().copied().collect();
    // Instances that cannot share a host: they publish ports, or listen on the host's own.
    let spread = !ports.is_empty() || req.one_per_host;
    let fits_constraints = |h: &HostView| req.constraints.iter().all(|c| c.matches(&h.labels));

    let mut out = Plan::default();
    // Instances of this service per host id (kept + placed in this plan).
    let mut on_host: BTreeMap<&str, usize> = BTreeMap::new();
    // Containers added per host id by this plan.
    let mut added: BTreeMap<&str, usize> = BTreeMap::new();

    // Surplus: BTreeMap iterates ascending, so reversed it is highest first.
    for &n in req.instances.keys().rev() {
        if n == 0 || n > req.scale {
            out.remove.push(n);
        }
    }

    let mut to_place = Vec::new();
    for n in 1..=req.scale {
        let kept_on = req
            .instances
            .get(&n)
            .and_then(|h| h.as_deref())
            .and_then(|id| by_id.get(id).copied())
            .filter(|h| h.schedulable && fits_constraints(h))
            .filter(|h| !spread || !on_host.contains_key(h.id.as_str()));
        match kept_on {
            Some(h) => *on_host.entry(h.id.as_str()).or_default() += 1,
            None => to_place.push(n),
        }
    }

    for n in to_place {
        let port_free = |h: &HostView, on_host: &BTreeMap<&str, usize>| {
            !spread || (!on_host.contains_key(h.id.as_str()) && ports.iter().all(|p| !h.used_host_ports.contains(p)))
        };
        let best = ordered.iter().copied().filter(|h| h.eligible() && fits_constraints(h) && port_free(h, &on_host)).min_by_key(|h| {
            let id = h.id.as_str();
            (
                req.avoid.get(&n).is_some_and(|a| a == id),
                on_host.get(id).copied().unwrap_or(0),
                h.containers.saturating_add(added.get(id).copied().unwrap_or(0)),
                h.name.as_str(),
                id,
            )
        });
        match best {
            Some(h) => {
                *on_host.entry(h.id.as_str()).or_default() += 1;
                *added.entry(h.id.as_str()).or_default() += 1;
                out.place.push((n, h.id.clone()));
            }
            None => out.unplaced.push(Unplaced { instance: n, reason: why_unplaced(&ordered, req, &ports, &on_host) }),
        }
    }
    out
}

/// Explains why no host is feasible, naming the first obstacle.
fn why_unplaced(ordered: &[&HostView], req: &ServiceRequest, ports: &BTreeSet<(u16, Protocol)>, on_host: &BTreeMap<&str, usize>) -> String {
    if ordered.is_empty() {
        return "no hosts are registered".to_string();
    }
    let schedulable: Vec<&HostView> = ordered.iter().copied().filter(|h| h.eligible()).collect();
    if schedulable.is_empty() {
        let names = list(ordered.iter().map(|h| h.display_name().to_string()));
        return format!("no schedulable hosts: all {} are inactive or deactivated ({names})", count(ordered.len(), "host"));
    }

    // A single constraint nothing satisfies is the most useful thing to name.
    for c in &req.constraints {
        if schedulable.iter().any(|h| c.matches(&h.labels)) {
            continue;
        }
        let detail = list(ordered.iter().map(|h| describe_for(h, c)));
        return format!("no schedulable host matches {c} ({}: {detail})", count(ordered.len(), "host"));
    }
    let matching: Vec<&HostView> = schedulable.iter().copied().filter(|h| req.constraints.iter().all(|c| c.matches(&h.labels))).collect();
    if matching.is_empty() {
        let all = req.constraints.iter().map(Constraint::to_string).collect::<Vec<_>>().join(", ");
        let names = list(schedulable.iter().map(|h| h.display_name().to_string()));
        return format!("no schedulable host matches all of {all} together ({} schedulable: {names})", count(schedulable.len(), "host"));
    }

    if ports.is_empty() {
        // Only `one_per_host` spreads a service without ports.
        let hosts = if matching.len() == 1 { "the only matching host already runs" } else { "every matching host already runs" };
        return format!(
            "{hosts} an instance of this service, and its instances use the host's network, so each needs a host of its own: add hosts or lower the scale"
        );
    }
    // Every matching host is blocked by a port.
    let wanted = ports.iter().map(|(p, proto)| format!("{p}/{proto}")).collect::<Vec<_>>().join(", ");
    let what = if ports.len() == 1 { format!("port {wanted}") } else { format!("one of ports {wanted}") };
    let detail = list(matching.iter().map(|h| {
        let mut by: Vec<String> = Vec::new();
        if on_host.contains_key(h.id.as_str()) {
            by.push("an instance of this service".to_string());
        }
        let taken: Vec<String> = ports.iter().filter(|p| h.used_host_ports.contains(p)).map(|(p, proto)| format!("{p}/{proto}")).collect();
        if !taken.is_empty() {
            by.push(format!("another service on {}", taken.join(", ")));
        }
        format!("{}: {}", h.display_name(), by.join(" and "))
    }));
    let hosts = if matching.len() == 1 { "the only matching host already publishes" } else { "every matching host already publishes" };
    format!("{hosts} {what} ({detail})")
}

/// `h1 zone=a`, `h2 has no zone label`, with `(unschedulable)` where it applies.
fn describe_for(h: &HostView, c: &Constraint) -> String {
    let label = match h.labels.get(&c.key) {
        Some(v) => format!("{}={v}", c.key),
        None => format!("no {} label", c.key),
    };
    let state = match (h.schedulable, h.ineligible) {
        (true, false) => "",
        (true, true) => ", deactivated",
        (false, _) => ", unschedulable",
    };
    format!("{} {label}{state}", h.display_name())
}

/// Joins at most [`REASON_HOST_LIMIT`] items, summarising the rest.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut shown: Vec<String> = items.take(REASON_HOST_LIMIT).collect();
    if total > REASON_HOST_LIMIT {
        shown.push(format!("and {} more", total - REASON_HOST_LIMIT));
    }
    shown.join("; ")
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
