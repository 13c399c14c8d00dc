//! The shared scenario suite (`tests/scenarios/`) on the real kernel: prints
//! its record (`SCENARIO <config> key = value` lines, collected into
//! `tests/scenarios/linux-6.12.txt`) and checks it against the committed one.

#[path = "../scenarios/mod.rs"]
mod suite;

use std::time::Duration;

use suite::{Env, Kind};
use typed_vfio::iommufd::{CdevDevice, Iommufd, IommufdError};
use typed_vfio::{Container, ContainerError, Group, GroupError, Unset};

use crate::rig::{self, IommuKind};

struct Real;

impl Env for Real {
    fn kind(&self) -> Kind {
        match rig::iommu() {
            IommuKind::Type1 => Kind::Type1,
            IommuKind::Type1v2 => Kind::Type1v2,
            IommuKind::NoIommu => Kind::NoIommu,
            IommuKind::Iommufd => Kind::Iommufd,
        }
    }
    fn devices(&self) -> Vec<String> {
        rig::devices()
    }
    fn open_container(&self) -> Result<Container<Unset>, ContainerError> {
        Container::open()
    }
    fn open_group_of(&self, address: &str) -> Result<Group, GroupError> {
        Group::for_pci_device(address)
    }
    fn open_iommufd(&self) -> Result<Iommufd, IommufdError> {
        Iommufd::open()
    }
    fn open_cdev(&self, address: &str) -> Result<CdevDevice, IommufdError> {
        CdevDevice::open_pci(address)
    }
    fn quiet(&self) -> Duration {
        Duration::from_millis(300)
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn scenarios_record() {
    let config = rig::config();
    let record = suite::run(&Real);
    let lines = record.lines(&config);
    for line in &lines {
        println!("SCENARIO {line}");
    }
    let committed: Vec<String> = include_str!("../scenarios/linux-6.12.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    if committed
        .iter()
        .any(|l| l.starts_with(&format!("{config} ")))
    {
        // The kernel must still behave as recorded (no deviation applies:
        // real against real).
        let mine: Vec<&String> = lines.iter().collect();
        let theirs: Vec<&String> = committed
            .iter()
            .filter(|l| l.starts_with(&format!("{config} ")))
            .collect();
        assert_eq!(mine, theirs, "the real kernel no longer matches its record");
    } else {
        println!("SCENARIO-NOTE no committed record for {config} yet");
    }
}
