//! MSI-X with one eventfd per vector, as user-space drivers use it.
//!
//! [`Msix`] owns a device's MSI-X index while it lives: it knows which
//! vectors the kernel allocated (`0..n` when MSI-X was enabled with `n`
//! vectors, and more as vectors are armed on a platform with dynamic MSI-X
//! allocation), which eventfd each vector signals, and it refuses what the
//! kernel would refuse before asking:
//!
//! - a vector beyond the allocated set on an index the kernel reports
//!   `VFIO_IRQ_INFO_NORESIZE` is [`DeviceError::IrqNoResize`] (vfio-pci
//!   reports NORESIZE for MSI-X unless the platform's MSI domain can
//!   allocate vectors while MSI-X is enabled: `pci_msix_can_alloc_dyn`);
//! - enabling more vectors than the platform can allocate is
//!   [`DeviceError::IrqVectorsShort`] (vfio-pci enables nothing and returns
//!   how many it could have allocated);
//! - while the handle lives, [`Device::set_irq_eventfds`] and
//!   [`Device::disable_irq`] on the MSI-X index are
//!   [`DeviceError::IrqOwned`], so the handle never claims vectors the kernel
//!   no longer has.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::device::Device;
use crate::error::DeviceError;
use crate::sys;

/// The MSI-X IRQ index.
const INDEX: u32 = sys::VFIO_PCI_MSIX_IRQ_INDEX;

/// A device's MSI-X vectors and their eventfds, enabled until
/// [`disable`](Msix::disable) or drop. Made by [`Device::enable_msix`].
///
/// # Resets
///
/// `VFIO_DEVICE_RESET` does not tear the triggers down in vfio-pci: the
/// reset runs inside `pci_try_reset_function`, which saves the function's
/// MSI-X state and writes it back afterwards (`pci_restore_msi_state`), and
/// vfio-pci's interrupt contexts are untouched. A reset that bypasses the PCI
/// core (a device's own reset register, a link reset) can leave the
/// device's MSI-X table cleared, and then interrupts stop arriving while
/// every eventfd is still armed. [`Msix::rearm`] issues the armed set
/// again, which makes vfio-pci write each vector's message back into the
/// device's table (`vfio_msi_set_vector_signal` refreshes it), and
/// [`Msix::reset_device`] resets and re-arms in one step, so a driver that
/// resets through the handle keeps its interrupts whatever the reset did.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::os::fd::AsFd;
/// use nix::sys::eventfd::{EfdFlags, EventFd};
/// use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
/// use typed_vfio::{DeviceError, Type1v2};
///
/// // An NVMe controller whose MSI-X cannot grow once enabled.
/// let sim = Simulator::builder()
///     .group(SimGroup::new(1).device(SimDevice::nvme("0000:02:00.0").msix_resizable(false)))
///     .build()?;
/// let container = sim.open_container()?.attach(sim.open_group(1)?)?.set_iommu::<Type1v2>()?;
/// let device = container.open_device("0000:02:00.0")?;
/// let (admin, io) = (EventFd::from_flags(EfdFlags::EFD_NONBLOCK)?, EventFd::new()?);
///
/// let mut msix = device.enable_msix(&[Some(admin.as_fd()), None])?;
/// assert_eq!(msix.allocated(), 2);
/// msix.set(1, Some(io.as_fd()))?; // inside the allocated set
/// assert!(matches!(
///     msix.set(2, Some(io.as_fd())),
///     Err(DeviceError::IrqNoResize { vector: 2, allocated: 2, .. })
/// ));
/// msix.trigger(0)?; // loopback: the kernel signals vector 0's eventfd
/// assert_eq!(admin.read()?, 1);
/// msix.disable().map_err(|(_, e)| e)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Msix<'d> {
    device: &'d Device,
    /// The index's vector count (the MSI-X table size).
    table: u32,
    /// Vectors can be added while enabled (no `NORESIZE`).
    resizable: bool,
    /// Vectors the kernel has allocated: `0..allocated`.
    allocated: u32,
    /// The eventfd each allocated vector signals (our own duplicates, so
    /// that [`Msix::rearm`] can issue them again).
    fds: Vec<Option<OwnedFd>>,
    /// MSI-X is enabled (false once [`Msix::disable`] succeeded).
    live: bool,
}

impl Device {
    /// Enables MSI-X with vectors `0..fds.len()` allocated, vector `i`
    /// signalling `fds[i]` (`None`: allocated, not armed). Takes the
    /// device's MSI-X index until the handle is disabled or dropped.
    ///
    /// Errors: no MSI-X on the device, or more vectors than its table
    /// ([`DeviceError::IrqRange`]); another handle lives
    /// ([`DeviceError::IrqOwned`]); the platform has fewer vectors
    /// ([`DeviceError::IrqVectorsShort`]); the kernel's refusal otherwise
    /// (another interrupt type enabled: `EINVAL`).
    #[doc(alias = "VFIO_DEVICE_SET_IRQS")]
    pub fn enable_msix(&self, fds: &[Option<BorrowedFd<'_>>]) -> Result<Msix<'_>, DeviceError> {
        let info = self.irq_info(INDEX)?;
        let wanted = u32::try_from(fds.len()).unwrap_or(u32::MAX);
        if wanted == 0 || wanted > info.count {
            return Err(DeviceError::IrqRange {
                index: INDEX,
                start: 0,
                end: fds.len() as u64,
                count: info.count,
            });
        }
        let owned = dup_all(fds)?;
        if !self.claim_msix() {
            return Err(DeviceError::IrqOwned { index: INDEX });
        }
        // Every vector named (armed or not), so the kernel allocates them
        // all: it allocates `start + count` when enabling.
        if let Err(e) = self.arm_eventfds(INDEX, 0, fds) {
            self.release_msix();
            return Err(e);
        }
        Ok(Msix {
            device: self,
            table: info.count,
            resizable: !info.noresize(),
            allocated: wanted,
            fds: owned,
            live: true,
        })
    }
}

impl<'d> Msix<'d> {
    /// The device.
    pub fn device(&self) -> &'d Device {
        self.device
    }

    /// Vectors the kernel has allocated (`0..allocated`).
    pub fn allocated(&self) -> u32 {
        self.allocated
    }

    /// The MSI-X table size: the most vectors there can be.
    pub fn table_size(&self) -> u32 {
        self.table
    }

    /// Vectors can be added while MSI-X is enabled (the kernel does not
    /// report `NORESIZE`).
    pub fn resizable(&self) -> bool {
        self.resizable
    }

    /// The eventfd vector `vector` signals, if it is armed.
    pub fn eventfd(&self, vector: u32) -> Option<BorrowedFd<'_>> {
        self.fds
            .get(vector as usize)
            .and_then(|fd| fd.as_ref().map(AsFd::as_fd))
    }

    /// Arms vector `vector` with `fd`, or disarms it with `None` (it stays
    /// allocated). A vector beyond the allocated set is allocated when the
    /// index is resizable; otherwise [`DeviceError::IrqNoResize`], before
    /// any ioctl. A vector beyond the table is [`DeviceError::IrqRange`].
    pub fn set(&mut self, vector: u32, fd: Option<BorrowedFd<'_>>) -> Result<(), DeviceError> {
        self.set_block(vector, &[fd])
    }

    /// Arms (or disarms) vectors `start..start + fds.len()` in one
    /// `VFIO_DEVICE_SET_IRQS`. On failure the kernel has disarmed the
    /// vectors of the block it had already armed (`vfio_msi_set_block`), and
    /// so has the handle.
    pub fn set_block(
        &mut self,
        start: u32,
        fds: &[Option<BorrowedFd<'_>>],
    ) -> Result<(), DeviceError> {
        let end = u64::from(start) + fds.len() as u64;
        if end > u64::from(self.table) {
            return Err(DeviceError::IrqRange {
                index: INDEX,
                start,
                end,
                count: self.table,
            });
        }
        // `end` ≤ table, a u32.
        let end = end as u32;
        // The last vector the block arms (disarming allocates nothing).
        let armed_end = fds
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| start + i as u32 + 1);
        if armed_end > self.allocated && !self.resizable {
            return Err(DeviceError::IrqNoResize {
                index: INDEX,
                vector: self.allocated.max(start),
                allocated: self.allocated,
            });
        }
        let owned = dup_all(fds)?;
        let result = self.device.arm_eventfds(INDEX, start, fds);
        let slots = self.slots(start, end);
        match result {
            Ok(()) => {
                for (slot, fd) in slots.iter_mut().zip(owned) {
                    *slot = fd;
                }
                self.allocated = self.allocated.max(armed_end);
                Ok(())
            }
            Err(e) => {
                for slot in slots {
                    *slot = None;
                }
                Err(e)
            }
        }
    }

    /// The handle's slots for vectors `start..end`, grown to `end`.
    fn slots(&mut self, start: u32, end: u32) -> &mut [Option<OwnedFd>] {
        if self.fds.len() < end as usize {
            self.fds.resize_with(end as usize, || None);
        }
        &mut self.fds[start as usize..end as usize]
    }

    /// Fires vector `vector` from user space (`DATA_NONE | ACTION_TRIGGER`):
    /// the kernel signals its eventfd, as the device would.
    pub fn trigger(&self, vector: u32) -> Result<(), DeviceError> {
        self.device.trigger_irq(INDEX, vector, 1)
    }

    /// Issues every allocated vector's eventfd again, which makes vfio-pci
    /// rewrite each armed vector's message into the device's MSI-X table:
    /// after a reset that cleared the table behind the PCI core (see the
    /// resets section of [`Msix`]'s docs).
    pub fn rearm(&mut self) -> Result<(), DeviceError> {
        let fds: Vec<Option<BorrowedFd<'_>>> = self
            .fds
            .iter()
            .map(|fd| fd.as_ref().map(AsFd::as_fd))
            .collect();
        self.device.arm_eventfds(INDEX, 0, &fds)
    }

    /// Resets the device (`VFIO_DEVICE_RESET`, see [`Device::reset`]) and
    /// re-arms every vector ([`rearm`](Self::rearm)): interrupts keep
    /// arriving at the same eventfds whatever the reset did to the table.
    pub fn reset_device(&mut self) -> Result<(), DeviceError> {
        self.device.reset()?;
        self.rearm()
    }

    /// Disables MSI-X (`DATA_NONE | ACTION_TRIGGER`, count 0): every vector
    /// freed. On failure the handle comes back with the error.
    pub fn disable(mut self) -> Result<(), (Self, DeviceError)> {
        match self.device.disarm_all(INDEX) {
            Ok(()) => {
                // Disabled: Drop only gives the index back.
                self.live = false;
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }
}

impl Drop for Msix<'_> {
    fn drop(&mut self) {
        // Drop cannot report: a failure leaves MSI-X as it was, and the
        // kernel disables it when the device fd closes.
        if self.live {
            let _ = self.device.disarm_all(INDEX);
        }
        self.device.release_msix();
    }
}

/// Our own duplicates of `fds`, for [`Msix::rearm`]: dup(2), then
/// `FD_CLOEXEC` (QEMU's user-mode emulation, under which the foreign
/// architectures' suites run, loses an eventfd's byte swap on an fd made by
/// `F_DUPFD_CLOEXEC`, which `try_clone_to_owned` uses, and keeps it on dup).
fn dup_all(fds: &[Option<BorrowedFd<'_>>]) -> Result<Vec<Option<OwnedFd>>, DeviceError> {
    use crate::Errno;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let fail = |ioctl: &'static str| move |errno| DeviceError::Ioctl { ioctl, errno };
    fds.iter()
        .map(|fd| {
            fd.map(|fd| {
                // Miri has F_DUPFD_CLOEXEC and no F_SETFD.
                if cfg!(miri) {
                    return fd.try_clone_to_owned().map_err(|e| {
                        fail("F_DUPFD_CLOEXEC")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
                    });
                }
                let dup = nix::unistd::dup(fd).map_err(fail("dup"))?;
                fcntl(&dup, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(fail("F_SETFD"))?;
                Ok(dup)
            })
            .transpose()
        })
        .collect()
}
