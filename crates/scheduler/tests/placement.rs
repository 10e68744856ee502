//! In-memory harness for the scheduler: build hosts and requests, call `plan`,
//! and check the result. No I/O.

use std::collections::{BTreeMap, BTreeSet};

use corral_scheduler::{plan, Constraint, ConstraintParseErrorKind, HostView, Plan, Protocol, ServiceRequest};

// ---------------------------------------------------------------- harness

fn host(id: &str) -> HostView {
    HostView { id: id.to_string(), name: id.to_string(), schedulable: true, ..HostView::default() }
}

fn hosts(n: usize) -> Vec<HostView> {
    (1..=n).map(|i| host(&format!("h{i}"))).collect()
}

fn labelled(id: &str, labels: &[(&str, &str)]) -> HostView {
    let mut h = host(id);
    h.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    h
}

fn scale(n: u32) -> ServiceRequest {
    ServiceRequest { scale: n, ..ServiceRequest::default() }
}

/// Final instance -> host map after applying the plan to the request.
fn apply(req: &ServiceRequest, p: &Plan) -> BTreeMap<u32, String> {
    let moved: BTreeSet<u32> = p.place.iter().map(|(n, _)| *n).chain(p.unplaced.iter().map(|u| u.instance)).collect();
    let mut out: BTreeMap<u32, String> = req
        .instances
        .iter()
        .filter(|(n, h)| **n >= 1 && **n <= req.scale && h.is_some() && !moved.contains(n))
        .map(|(n, h)| (*n, h.clone().unwrap()))
        .collect();
    for (n, h) in &p.place {
        out.insert(*n, h.clone());
    }
    out
}

/// Per-host instance counts after applying the plan (hosts with 0 included).
fn counts(hs: &[HostView], req: &ServiceRequest, p: &Plan) -> BTreeMap<String, usize> {
    let mut c: BTreeMap<String, usize> = hs.iter().map(|h| (h.id.clone(), 0)).collect();
    for h in apply(req, p).values() {
        *c.entry(h.clone()).or_default() += 1;
    }
    c
}

fn sorted_counts(hs: &[HostView], req: &ServiceRequest, p: &Plan) -> Vec<usize> {
    let mut v: Vec<usize> = counts(hs, req, p).into_values().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// The request after the plan is carried out, for a follow-up scaling step.
fn after(req: &ServiceRequest, p: &Plan, new_scale: u32) -> ServiceRequest {
    ServiceRequest { scale: new_scale, instances: apply(req, p).into_iter().map(|(n, h)| (n, Some(h))).collect(), ..req.clone() }
}

/// Every instance 1..=scale is exactly one of: kept, placed, unplaced; nothing
/// else is mentioned; removals are exactly the surplus.
fn assert_partition(req: &ServiceRequest, p: &Plan) {
    let placed: Vec<u32> = p.place.iter().map(|(n, _)| *n).collect();
    let unplaced: Vec<u32> = p.unplaced.iter().map(|u| u.instance).collect();
    for n in 1..=req.scale {
        let was_on = req.instances.get(&n).cloned().flatten();
        let kept = was_on.is_some() && !placed.contains(&n) && !unplaced.contains(&n);
        let times = usize::from(kept) + placed.iter().filter(|m| **m == n).count() + unplaced.iter().filter(|m| **m == n).count();
        assert_eq!(times, 1, "instance {n} accounted {times} times in {p:?}");
    }
    for n in placed.iter().chain(&unplaced) {
        assert!((1..=req.scale).contains(n), "instance {n} out of range in {p:?}");
    }
    let surplus: Vec<u32> = req.instances.keys().rev().copied().filter(|n| *n == 0 || *n > req.scale).collect();
    assert_eq!(p.remove, surplus);
}

// ---------------------------------------------------------------- spread

#[test]
fn scale_10_over_2_hosts_is_5_5() {
    let hs = hosts(2);
    let req = scale(10);
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place.len(), 10);
    assert!(p.unplaced.is_empty() && p.remove.is_empty());
    assert_eq!(sorted_counts(&hs, &req, &p), vec![5, 5]);
}

#[test]
fn scale_10_over_3_hosts_is_4_3_3() {
    let hs = hosts(3);
    let req = scale(10);
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(sorted_counts(&hs, &req, &p), vec![4, 3, 3]);
    // Deterministic round-robin by name: 1->h1, 2->h2, 3->h3, 4->h1, ...
    assert_eq!(p.place[0], (1, "h1".into()));
    assert_eq!(p.place[1], (2, "h2".into()));
    assert_eq!(p.place[2], (3, "h3".into()));
    assert_eq!(p.place[9], (10, "h1".into()));
}

#[test]
fn scale_up_4_to_10_keeps_first_4_in_place() {
    let hs = hosts(3);
    let first = scale(4);
    let p1 = plan(&hs, &first);
    let before = apply(&first, &p1);

    let req = after(&first, &p1, 10);
    let p2 = plan(&hs, &req);
    assert_partition(&req, &p2);
    let placed: Vec<u32> = p2.place.iter().map(|(n, _)| *n).collect();
    assert_eq!(placed, (5..=10).collect::<Vec<_>>());
    let now = apply(&req, &p2);
    for n in 1..=4 {
        assert_eq!(now[&n], before[&n], "instance {n} moved");
    }
    assert_eq!(sorted_counts(&hs, &req, &p2), vec![4, 3, 3]);
}

#[test]
fn scale_down_10_to_4_removes_5_through_10() {
    let hs = hosts(3);
    let first = scale(10);
    let p1 = plan(&hs, &first);
    let req = after(&first, &p1, 4);
    let p2 = plan(&hs, &req);
    assert_partition(&req, &p2);
    assert_eq!(p2.remove, vec![10, 9, 8, 7, 6, 5]);
    assert!(p2.place.is_empty() && p2.unplaced.is_empty());
}

#[test]
fn ties_go_to_fewest_containers_then_name() {
    let mut busy = host("a-busy");
    busy.containers = 7;
    let mut idle = host("b-idle");
    idle.containers = 1;
    let hs = vec![busy, idle];
    let p = plan(&hs, &scale(1));
    assert_eq!(p.place, vec![(1, "b-idle".to_string())]);

    // Instances placed earlier in the plan count as containers for later ties:
    // 1 -> b (1 container) ... spread by service count dominates anyway.
    let p = plan(&hs, &scale(2));
    assert_eq!(sorted_counts(&hs, &scale(2), &p), vec![1, 1]);

    // Equal containers: lowest name, then lowest id.
    let mut x = host("id-z");
    x.name = "same".into();
    let mut y = host("id-a");
    y.name = "same".into();
    let p = plan(&[x, y], &scale(1));
    assert_eq!(p.place, vec![(1, "id-a".to_string())]);
}

#[test]
fn existing_skew_is_filled_not_rebalanced() {
    // 3 instances piled on h1; scaling to 6 puts the new ones on h2 first.
    let hs = hosts(2);
    let mut req = scale(6);
    for n in 1..=3 {
        req.instances.insert(n, Some("h1".into()));
    }
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(4, "h2".into()), (5, "h2".into()), (6, "h2".into())]);
}

// ---------------------------------------------------------------- constraints

#[test]
fn equal_constraint_restricts_to_matching_hosts() {
    let hs = vec![labelled("h1", &[("zone", "a")]), labelled("h2", &[("zone", "b")]), labelled("h3", &[("zone", "a")]), host("h4")];
    let mut req = scale(4);
    req.constraints = vec!["host.zone=a".parse().unwrap()];
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    let c = counts(&hs, &req, &p);
    assert_eq!((c["h1"], c["h2"], c["h3"], c["h4"]), (2, 0, 2, 0));
}

#[test]
fn not_equal_constraint_excludes_hosts_and_allows_missing_label() {
    let hs = vec![labelled("h1", &[("zone", "a")]), labelled("h2", &[("zone", "b")]), host("h3")];
    let mut req = scale(4);
    req.constraints = vec!["host.zone!=a".parse().unwrap()];
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    let c = counts(&hs, &req, &p);
    assert_eq!((c["h1"], c["h2"], c["h3"]), (0, 2, 2));
}

#[test]
fn instance_on_host_that_no_longer_matches_is_replaced() {
    let hs = vec![labelled("h1", &[("zone", "a")]), labelled("h2", &[("zone", "b")])];
    let mut req = scale(2);
    req.constraints = vec![Constraint::is("zone", "b")];
    req.instances.insert(1, Some("h1".into()));
    req.instances.insert(2, Some("h2".into()));
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(1, "h2".to_string())]);
}

#[test]
fn unmatched_constraint_is_named_in_reason() {
    let mut off = labelled("h3", &[("zone", "b")]);
    off.schedulable = false;
    let hs = vec![labelled("h1", &[("zone", "a")]), host("h2"), off];
    let mut req = scale(2);
    req.constraints = vec!["host.zone=b".parse().unwrap()];
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert!(p.place.is_empty());
    assert_eq!(p.unplaced.len(), 2);
    let r = &p.unplaced[0].reason;
    assert!(r.contains("no schedulable host matches host.zone=b"), "{r}");
    assert!(r.contains("3 hosts"), "{r}");
    assert!(r.contains("h1 zone=a"), "{r}");
    assert!(r.contains("h2 no zone label"), "{r}");
    assert!(r.contains("h3 zone=b, unschedulable"), "{r}");
}

#[test]
fn contradictory_constraints_are_reported_together() {
    let hs = vec![labelled("h1", &[("zone", "a")]), labelled("h2", &[("disk", "ssd")])];
    let mut req = scale(1);
    req.constraints = vec![Constraint::is("zone", "a"), Constraint::is("disk", "ssd")];
    let p = plan(&hs, &req);
    let r = &p.unplaced[0].reason;
    assert!(r.contains("matches all of host.zone=a, host.disk=ssd together"), "{r}");
}

// ---------------------------------------------------------------- schedulability

#[test]
fn unschedulable_host_gets_nothing_and_its_instances_move() {
    let mut hs = hosts(3);
    hs[1].schedulable = false; // h2
    let mut req = scale(6);
    req.instances.insert(1, Some("h1".into()));
    req.instances.insert(2, Some("h2".into()));
    req.instances.insert(3, Some("h3".into()));
    req.instances.insert(4, Some("h2".into()));
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    let placed: Vec<u32> = p.place.iter().map(|(n, _)| *n).collect();
    assert_eq!(placed, vec![2, 4, 5, 6]);
    let c = counts(&hs, &req, &p);
    assert_eq!((c["h1"], c["h2"], c["h3"]), (3, 0, 3));
}

#[test]
fn ineligible_host_keeps_its_instances_but_gets_no_new_ones() {
    let mut hs = hosts(2);
    hs[1].ineligible = true; // h2, deactivated
    let mut req = scale(4);
    req.instances.insert(1, Some("h1".into()));
    req.instances.insert(2, Some("h2".into()));
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(3, "h1".into()), (4, "h1".into())], "instance 2 stays, the new ones avoid h2");
    // With no eligible host left, the reason names the deactivation.
    hs[0].ineligible = true;
    let p = plan(&hs, &scale(1));
    assert_eq!(p.unplaced.len(), 1);
    assert!(p.unplaced[0].reason.contains("inactive or deactivated"), "{}", p.unplaced[0].reason);
}

#[test]
fn instances_on_lost_hosts_or_unplaced_are_placed() {
    let mut hs = hosts(2);
    hs[1].containers = 1; // instance 3 lives there
    let mut req = scale(3);
    req.instances.insert(1, Some("gone".into()));
    req.instances.insert(2, None);
    req.instances.insert(3, Some("h2".into()));
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(1, "h1".into()), (2, "h1".into())]);
}

#[test]
fn no_schedulable_hosts_and_no_hosts_are_explained() {
    let p = plan(&[], &scale(1));
    assert_eq!(p.unplaced[0].reason, "no hosts are registered");

    let mut hs = hosts(2);
    for h in &mut hs {
        h.schedulable = false;
    }
    let p = plan(&hs, &scale(2));
    assert_eq!(p.unplaced.len(), 2);
    let r = &p.unplaced[0].reason;
    assert!(r.starts_with("no schedulable hosts"), "{r}");
    assert!(r.contains("h1; h2"), "{r}");
}

#[test]
fn long_host_lists_are_truncated() {
    let mut hs = hosts(9);
    for h in &mut hs {
        h.schedulable = false;
    }
    let r = plan(&hs, &scale(1)).unplaced[0].reason.clone();
    assert!(r.contains("and 4 more"), "{r}");
    assert!(!r.contains("h9"), "{r}");
}

// ---------------------------------------------------------------- ports

#[test]
fn published_port_allows_one_instance_per_host() {
    let hs = hosts(2);
    let mut req = scale(3);
    req.host_ports = vec![(8080, Protocol::Tcp)];
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(1, "h1".into()), (2, "h2".into())]);
    assert_eq!(p.unplaced.len(), 1);
    assert_eq!(p.unplaced[0].instance, 3);
    let r = &p.unplaced[0].reason;
    assert!(r.contains("every matching host already publishes port 8080/tcp"), "{r}");
    assert!(r.contains("this service"), "{r}");
}

#[test]
fn host_network_instances_take_a_host_each() {
    let hs = hosts(2);
    let mut req = scale(3);
    req.one_per_host = true;
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(1, "h1".into()), (2, "h2".into())]);
    let r = &p.unplaced[0].reason;
    assert!(r.contains("every matching host already runs an instance of this service") && r.contains("add hosts or lower the scale"), "{r}");
    // A kept instance that shares its host with another moves off it.
    let mut req = scale(2);
    req.one_per_host = true;
    req.instances = [(1, Some("h1".to_string())), (2, Some("h1".to_string()))].into();
    assert_eq!(plan(&hs, &req).place, vec![(2, "h2".into())]);
}

#[test]
fn other_services_port_blocks_a_host() {
    let mut hs = hosts(2);
    hs[0].used_host_ports.insert((8080, Protocol::Tcp));
    let mut req = scale(2);
    req.host_ports = vec![(8080, Protocol::Tcp)];
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(1, "h2".into())]);
    let r = &p.unplaced[0].reason;
    assert!(r.contains("8080/tcp"), "{r}");
    assert!(r.contains("h1: another service on 8080/tcp"), "{r}");
    assert!(r.contains("h2: an instance of this service"), "{r}");
}

#[test]
fn same_port_other_protocol_does_not_conflict() {
    let mut hs = hosts(1);
    hs[0].used_host_ports.insert((53, Protocol::Udp));
    let mut req = scale(1);
    req.host_ports = vec![(53, Protocol::Tcp)];
    let p = plan(&hs, &req);
    assert_eq!(p.place, vec![(1, "h1".into())]);
}

#[test]
fn kept_duplicates_on_one_host_with_ports_are_split() {
    let hs = hosts(2);
    let mut req = scale(2);
    req.host_ports = vec![(80, Protocol::Tcp)];
    req.instances.insert(1, Some("h1".into()));
    req.instances.insert(2, Some("h1".into()));
    let p = plan(&hs, &req);
    assert_partition(&req, &p);
    assert_eq!(p.place, vec![(2, "h2".into())]);
}

// ---------------------------------------------------------------- determinism

#[test]
fn same_input_gives_same_plan() {
    let mut hs = hosts(4);
    hs[2].containers = 3;
    hs[3].labels.insert("zone".into(), "x".into());
    let mut req = scale(9);
    req.constraints = vec![Constraint::is_not("zone", "x")];
    req.instances.insert(2, Some("h3".into()));
    req.instances.insert(12, Some("h1".into()));
    let a = plan(&hs, &req);
    let b = plan(&hs, &req);
    assert_eq!(a, b);

    // Host order in the slice does not matter either.
    let mut reversed = hs.clone();
    reversed.reverse();
    assert_eq!(plan(&reversed, &req), a);
}

// ---------------------------------------------------------------- parsing

#[test]
fn constraint_parse_good() {
    let c: Constraint = "host.zone=a".parse().unwrap();
    assert_eq!(c, Constraint::is("zone", "a"));
    let c: Constraint = "host.zone!=a".parse().unwrap();
    assert_eq!(c, Constraint::is_not("zone", "a"));
    let c: Constraint = "host.io.rancher.os=linux".parse().unwrap();
    assert_eq!(c.key, "io.rancher.os");
    let c: Constraint = "host.k=a=b".parse().unwrap();
    assert_eq!((c.key.as_str(), c.value.as_str(), c.equal), ("k", "a=b", true));

    for s in ["host.zone=a", "host.zone!=a", "host.io.rancher.os=linux", "host.k=a=b", "host.k!=a!=b"] {
        let c: Constraint = s.parse().unwrap();
        assert_eq!(c.to_string(), s);
        assert_eq!(c.to_string().parse::<Constraint>().unwrap(), c);
    }
}

#[test]
fn constraint_parse_bad() {
    let cases = [
        ("zone=a", ConstraintParseErrorKind::MissingPrefix, "must start with \"host.\""),
        ("Host.zone=a", ConstraintParseErrorKind::MissingPrefix, "must start with"),
        ("", ConstraintParseErrorKind::MissingPrefix, "must start with"),
        ("host.zone", ConstraintParseErrorKind::MissingOperator, "no \"=\" or \"!=\""),
        ("host.=a", ConstraintParseErrorKind::EmptyLabel, "label is empty"),
        ("host.!=a", ConstraintParseErrorKind::EmptyLabel, "label is empty"),
        ("host.zone=", ConstraintParseErrorKind::EmptyValue, "value is empty"),
        ("host.zone!=", ConstraintParseErrorKind::EmptyValue, "value is empty"),
        ("host.a!b=c", ConstraintParseErrorKind::InvalidLabel, "must not contain \"!\""),
    ];
    for (input, kind, what) in cases {
        let e = input.parse::<Constraint>().unwrap_err();
        assert_eq!(e.kind(), kind, "{input}");
        assert_eq!(e.input(), input);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("invalid constraint {input:?}: ")), "{msg}");
        assert!(msg.contains(what), "{msg}");
        assert!(msg.ends_with("use host.LABEL=VALUE or host.LABEL!=VALUE"), "{msg}");
    }
    let e = "zone=a".parse::<Constraint>().unwrap_err();
    assert_eq!(e.to_string(), "invalid constraint \"zone=a\": it must start with \"host.\"; use host.LABEL=VALUE or host.LABEL!=VALUE");
}

// ---------------------------------------------------------------- properties

/// Small deterministic PRNG so the property test needs no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn property_from_scratch_is_complete_and_even() {
    for n_hosts in 0..=7 {
        for s in 0..=25 {
            let mut hs = hosts(n_hosts);
            for (i, h) in hs.iter_mut().enumerate() {
                h.containers = (i * 7) % 5; // varied loads must not break evenness
            }
            let req = scale(s);
            let p = plan(&hs, &req);
            assert_partition(&req, &p);
            if n_hosts == 0 {
                assert_eq!(p.unplaced.len(), s as usize);
                continue;
            }
            assert!(p.unplaced.is_empty());
            let c = sorted_counts(&hs, &req, &p);
            assert!(c[0] - c[c.len() - 1] <= 1, "{n_hosts} hosts, scale {s}: {c:?}");
            // Scaling up again from the result keeps it even.
            let up = after(&req, &p, s + 5);
            let p2 = plan(&hs, &up);
            assert_partition(&up, &p2);
            let c = sorted_counts(&hs, &up, &p2);
            assert!(c[0] - c[c.len() - 1] <= 1, "{n_hosts} hosts, {s}+5: {c:?}");
        }
    }
}

#[test]
fn property_random_states_are_consistent() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let n_hosts = rng.below(6) as usize;
        let mut hs = hosts(n_hosts);
        for h in &mut hs {
            h.schedulable = rng.below(5) != 0;
            h.containers = rng.below(10) as usize;
            if rng.below(2) == 0 {
                h.labels.insert("zone".into(), ["a", "b"][rng.below(2) as usize].into());
            }
            if rng.below(4) == 0 {
                h.used_host_ports.insert((8080, Protocol::Tcp));
            }
        }
        let mut req = scale(rng.below(12) as u32);
        if rng.below(3) == 0 {
            req.host_ports = vec![(8080, Protocol::Tcp)];
        }
        match rng.below(4) {
            0 => req.constraints = vec![Constraint::is("zone", "a")],
            1 => req.constraints = vec![Constraint::is_not("zone", "a")],
            _ => {}
        }
        for _ in 0..rng.below(14) {
            let n = rng.below(16) as u32;
            let h = match rng.below(n_hosts as u64 + 2) as usize {
                0 => None,
                i if i <= n_hosts => Some(format!("h{i}")),
                _ => Some("gone".to_string()),
            };
            req.instances.insert(n, h);
        }

        let p = plan(&hs, &req);
        assert_partition(&req, &p);
        assert_eq!(plan(&hs, &req), p, "non-deterministic");
        for u in &p.unplaced {
            assert!(!u.reason.is_empty());
        }

        // Every placement is feasible: schedulable, matching, port-free.
        let by_id: BTreeMap<&str, &HostView> = hs.iter().map(|h| (h.id.as_str(), h)).collect();
        for (n, id) in &p.place {
            let h = by_id[id.as_str()];
            assert!(h.schedulable, "instance {n} on unschedulable {id}");
            assert!(req.constraints.iter().all(|c| c.matches(&h.labels)));
            for port in &req.host_ports {
                assert!(!h.used_host_ports.contains(port), "instance {n} on {id}");
            }
        }
        // With ports, no two instances of the service share a host.
        if !req.host_ports.is_empty() {
            let c = counts(&hs, &req, &p);
            assert!(c.values().all(|v| *v <= 1), "{c:?} {p:?}");
        }
    }
}

// ---------------------------------------------------------------- avoid

#[test]
fn a_replacement_avoids_the_host_it_was_deleted_from() {
    // h1 holds 1 and 3, h2 holds 2 and 4; instance 3 was deleted from h1.
    let mut req = scale(4);
    req.instances = BTreeMap::from([(1, Some("h1".into())), (2, Some("h2".into())), (4, Some("h2".into()))]);
    req.avoid = BTreeMap::from([(3, "h1".to_string())]);
    let p = plan(&hosts(2), &req);
    assert_eq!(p.place, [(3, "h2".to_string())], "placed elsewhere even though h1 has fewer");

    // With only the avoided host eligible, it is used rather than leaving the instance unplaced.
    let p = plan(&hosts(1), &ServiceRequest { avoid: BTreeMap::from([(1, "h1".to_string())]), ..scale(1) });
    assert_eq!(p.place, [(1, "h1".to_string())]);
}
