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
