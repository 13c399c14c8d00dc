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
    /// What the kernel reports: the `msi` reserved region of the group.
    fn msi_window(&self) -> u64 {
        rig::msi_window(rig::first_group_number()).0
    }
    /// A 2-byte read of edu's BAR0 is a synchronous external abort on
    /// aarch64 (QEMU's edu accepts only 4- and 8-byte accesses; x86 reads
    /// 0): it kills the guest kernel, so the aarch64 guest never does it.
    /// (32-bit PowerPC reads 0, as x86 does.)
    fn narrow_bar0_reads(&self) -> bool {
        !cfg!(target_arch = "aarch64")
    }
    /// edu is `DEVICE_NATIVE_ENDIAN` in QEMU: big-endian on PowerPC.
    fn big_endian_registers(&self) -> bool {
        crate::edu::EDU_BIG_ENDIAN
    }
}

/// The committed record of this architecture: x86 VT-d guests in
/// `linux-6.12.txt` (which `tests/sim_diff.rs` compares the simulator
/// with), the aarch64 SMMUv3 guest in `linux-6.12-aarch64.txt` (not
/// compared with the simulator, which models VT-d), the 32-bit PowerPC
/// no-IOMMU guest in `linux-6.12-ppc32.txt`, the 64-bit one in
/// `linux-6.12-ppc64.txt`; the Linux 7.2 guests (`k72-*`)
/// in `linux-7.2.txt`.
fn committed(config: &str) -> &'static str {
    if config.starts_with("k72-") {
        include_str!("../scenarios/linux-7.2.txt")
    } else {
        COMMITTED
    }
}

const COMMITTED: &str = if cfg!(target_arch = "aarch64") {
    include_str!("../scenarios/linux-6.12-aarch64.txt")
} else if cfg!(target_arch = "powerpc") {
    include_str!("../scenarios/linux-6.12-ppc32.txt")
} else if cfg!(target_arch = "powerpc64") {
    include_str!("../scenarios/linux-6.12-ppc64.txt")
} else {
    include_str!("../scenarios/linux-6.12.txt")
};

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn scenarios_record() {
    let config = rig::config();
    let record = suite::run(&Real);
    let lines = record.lines(&config);
    for line in &lines {
        println!("SCENARIO {line}");
    }
    let committed: Vec<String> = committed(&config).lines().map(str::to_owned).collect();
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
