//! The differential check: the scenario suite of `tests/scenarios/` on the
//! simulated kernel, compared with the real Linux 6.12 kernel's record of
//! the same suite (`tests/scenarios/linux-6.12.txt`, written by the guest
//! rig's `scenarios::record` test). Any difference not listed in
//! `scenarios::DEVIATIONS` fails.

#[path = "scenarios/mod.rs"]
mod scenarios;

use std::time::Duration;

use scenarios::{Env, Kind};
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Container, ContainerError, Group, GroupError, Unset};

const REAL: &str = include_str!("scenarios/linux-6.12.txt");

/// A simulator shaped like the guest rig: two edu devices, each in its own
/// group behind its own root port.
struct Sim {
    sim: Simulator,
    kind: Kind,
}

impl Sim {
    fn new(kind: Kind) -> Self {
        let group = |n| match kind {
            Kind::NoIommu => SimGroup::noiommu(n),
            _ => SimGroup::new(n),
        };
        let sim = Simulator::builder()
            .group(group(0).device(SimDevice::edu("0000:01:00.0")))
            .group(group(1).device(SimDevice::edu("0000:02:00.0")))
            .build()
            .unwrap();
        Sim { sim, kind }
    }
}

impl Env for Sim {
    fn kind(&self) -> Kind {
        self.kind
    }
    fn devices(&self) -> Vec<String> {
        vec!["0000:01:00.0".into(), "0000:02:00.0".into()]
    }
    fn open_container(&self) -> Result<Container<Unset>, ContainerError> {
        self.sim.open_container()
    }
    fn open_group_of(&self, address: &str) -> Result<Group, GroupError> {
        self.sim.open_group_of(address)
    }
    fn quiet(&self) -> Duration {
        Duration::ZERO
    }
}

fn check(kind: Kind, configs: &[&str]) {
    let sim = scenarios::run(&Sim::new(kind));
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
