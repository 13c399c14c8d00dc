//! The differential check: the scenario suite of `tests/scenarios/` on the
//! simulated kernel, compared with the real Linux 6.12 kernel's record of
//! the same suite (`tests/scenarios/linux-6.12.txt`, written by the guest
//! rig's `scenarios::record` test). Any difference not listed in
//! `scenarios::DEVIATIONS` fails.

#[path = "scenarios/mod.rs"]
mod scenarios;

use scenarios::{Kind, SimEnv};

const REAL: &str = include_str!("scenarios/linux-6.12.txt");

fn check(kind: Kind, configs: &[&str]) {
    let sim = scenarios::run(&SimEnv::new(kind));
    let real: Vec<String> = REAL.lines().map(str::to_owned).collect();
    let mut compared = 0;
    let mut diffs = Vec::new();
    for config in configs {
        if !real.iter().any(|l| l.starts_with(&format!("{config} "))) {
            continue;
        }
        compared += 1;
        diffs.extend(scenarios::compare(config, &real, &sim.lines(config)));
    }
    if compared == 0 {
        // What the simulator would be compared with, for whoever records
        // the real kernel next.
        for config in configs {
            for line in sim.lines(config) {
                println!("SIM {line}");
            }
        }
    }
    assert!(compared > 0, "no real-kernel record for {configs:?}");
    assert!(
        diffs.is_empty(),
        "unexplained differences:\n{}",
        diffs.join("\n")
    );
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn type1_matches_the_real_kernel() {
    check(Kind::Type1, &["custom-type1"]);
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn type1v2_matches_the_real_kernel() {
    check(Kind::Type1v2, &["stock-type1v2", "custom-type1v2"]);
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn noiommu_matches_the_real_kernel() {
    check(Kind::NoIommu, &["custom-noiommu"]);
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn iommufd_matches_the_real_kernel() {
    check(Kind::Iommufd, &["custom-iommufd"]);
}

/// The Linux 7.2 record (the `k72-*` guests).
const REAL_72: &str = include_str!("scenarios/linux-7.2.txt");

/// The keys the 7.2 record names as answered differently from 6.12
/// (`# differs from 6.12: <key> <reason>`).
fn named_72() -> Vec<&'static str> {
    REAL_72
        .lines()
        .filter_map(|l| l.strip_prefix("# differs from 6.12: "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// The `key = value` pairs of one configuration in a record.
fn pairs<'a>(record: &'a str, config: &str) -> Vec<(&'a str, &'a str)> {
    let prefix = format!("{config} ");
    record
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|l| l.split_once(" = "))
        .collect()
}

#[test]
fn linux_7_2_differs_from_6_12_where_named() {
    let mut differing = Vec::new();
    for (old, new) in [
        ("custom-type1v2", "k72-type1v2"),
        ("custom-iommufd", "k72-iommufd"),
    ] {
        let (a, b) = (pairs(REAL, old), pairs(REAL_72, new));
        assert!(
            !a.is_empty() && !b.is_empty(),
            "no record for {old} or {new}"
        );
        let (ka, kb): (Vec<&str>, Vec<&str>) = (
            a.iter().map(|p| p.0).collect(),
            b.iter().map(|p| p.0).collect(),
        );
        assert_eq!(ka, kb, "{old} and {new} record different keys");
        for ((k, va), (_, vb)) in a.iter().zip(&b) {
            if va != vb {
                differing.push(*k);
            }
        }
    }
    differing.sort_unstable();
    differing.dedup();
    let mut named = named_72();
    named.sort_unstable();
    assert_eq!(differing, named, "the differences 7.2's record names");
}

/// The simulator against the 7.2 record, where 7.2 answers as 6.12 (the
/// simulator models 6.12; the named differences are left out).
fn check_72(kind: Kind, config: &str) {
    let named = named_72();
    let keep = |l: &String| {
        l.split_once(' ')
            .and_then(|(_, rest)| rest.split_once(" = "))
            .is_none_or(|(k, _)| !named.contains(&k))
    };
    let sim: Vec<String> = scenarios::run(&SimEnv::new(kind))
        .lines(config)
        .into_iter()
        .filter(keep)
        .collect();
    let real: Vec<String> = REAL_72.lines().map(str::to_owned).filter(keep).collect();
    assert!(real.iter().any(|l| l.starts_with(&format!("{config} "))));
    let diffs = scenarios::compare(config, &real, &sim);
    assert!(
        diffs.is_empty(),
        "unexplained differences:\n{}",
        diffs.join("\n")
    );
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn type1v2_matches_linux_7_2() {
    check_72(Kind::Type1v2, "k72-type1v2");
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn iommufd_matches_linux_7_2() {
    check_72(Kind::Iommufd, "k72-iommufd");
}
