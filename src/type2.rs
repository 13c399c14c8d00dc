//! The Freescale PAMU ("type2") IOMMU of QorIQ PowerPC SoCs.
//!
//! ## History, in two sentences
//!
//! "type2" was the 2013 VFIO design discussion's name for a second container
//! IOMMU model beside type1, the Freescale PAMU, whose ABI shipped only in
//! the Freescale/NXP SDK kernels (id 2 in the 3.8.13 SDK, 7 in OpenIL).
//! Upstream never merged it, later solved MSI for type1 transparently, and
//! removed PAMU multi-window support in 2021; this module speaks the shipped
//! ABI, quirks included, and the [simulated kernel](crate::sim) models it.
//!
//! ## The model
//!
//! PAMU is not a page-table IOMMU: it translates through one *aperture*
//! (power-of-two size, aligned start) split into a power-of-two number of
//! equal *windows*. A DMA mapping covers whole windows, each backed by
//! physically contiguous memory; each MSI bank's doorbell must be mapped
//! into a window the program keeps free for it, before MSI is enabled.
//!
//! ```text
//!  Container<Attached>
//!     │ set_iommu_type2(PamuPlatform)        (platform check: "fsl,pamu")
//!     ▼
//!  Container<Type2<Fresh>> ── set_geometry(Aperture) ──▶ Container<Type2<HasGeometry>>
//!                                                           │ set_windows(n)
//!                                    set_geometry/windows ◀─┤
//!                                                           ▼
//!                                             Container<Type2<Ready>>
//!                                               map_msi_bank(i, iova) → MsiBankMapping<'_>
//!                                               map(&ContiguousBuffer, iova) → PamuMapping<'_>
//!                                               set_stash(..) (&mut self)
//! ```
//!
//! Transitions consume the container and hand it back in the error
//! ([`Type2TransitionError`]) on failure; mappings are guards that borrow the
//! `Ready` container, so a geometry or window change under a live mapping
//! does not compile.
//!
//! ## The SDK kernel's quirks
//!
//! The shipped driver swallows the errors of `SET_ATTR`, `MAP_MSI_BANK` and
//! `UNMAP_MSI_BANK` (it returns 0). So every value is checked here before
//! the call (the same typed error whichever kernel runs), every `SET_ATTR`
//! is read back with `GET_ATTR` and compared ([`Type2Error::NotApplied`]),
//! and the MSI-bank mappings are tracked by the crate.
//!
//! A read-back proves nothing when the value asked for is the one the kernel
//! reports already: the default aperture [0, 2^36 - 1] is reported before
//! any geometry is configured, and the window count reads as the maximum
//! after every geometry. So in that case the crate first sets another valid
//! value and reads it back, then the one asked for: a swallowed failure of
//! either is seen. (Two more ioctls, only in that case.)
//!
//! ## Rules and where they are enforced
//!
//! | kernel rule (shared/type2.md) | enforced | by |
//! | --- | --- | --- |
//! | PAMU requests only on a PAMU container (the numbers mean other things to sPAPR/type1) | compile time | the five requests are only issued from `Container<Type2<_>>` (`pamu_attr_on_type1`, `msi_bank_on_type1v2`, `msi_bank_before_set_iommu`) |
//! | `SET_IOMMU(2 or 7)` only on a PAMU platform (the ids are sPAPR's too) | run time | [`PamuPlatform`] token: [`PamuPlatform::detect`] (device tree `compatible = "fsl,pamu"`) or the explicit `unsafe` [`PamuPlatform::assume_present`] (its `# Safety` contract); [`Type2Error::NoPamuNode`] |
//! | windows only after geometry (`EINVAL`) | compile time | `set_windows` only on `Type2<HasGeometry>`/`Type2<Ready>` (`windows_before_geometry`) |
//! | `MAP_DMA` / `MAP_MSI_BANK` only once windows are configured | compile time | `map`, `map_msi_bank` only on `Type2<Ready>` (`pamu_dma_before_windows`) |
//! | no geometry/window change while enabled (`EBUSY`) or with MSI windows | compile time + run time | `set_geometry`/`set_windows` take `self`, guards borrow it (`pamu_geometry_while_mapped`, `pamu_windows_while_bank_mapped`); a guard leaked with `mem::forget`, or whose unmap failed, still holds its window: [`Type2Error::MappingsAlive`] |
//! | stash only once windows are configured | compile time | `set_stash` only on `Type2<Ready>` (`pamu_stash_before_windows`) |
//! | aperture size a power of two ≥ 4 KiB (`EINVAL`) | run time | [`Type2Error::ApertureSize`] |
//! | aperture start aligned to its size (`EINVAL`) | run time | [`Type2Error::ApertureUnaligned`] |
//! | window count a power of two, 1 ≤ n ≤ the maximum read back (`EINVAL`) | run time | [`Type2Error::WindowCount`] |
//! | a `SET_ATTR` the SDK kernel swallowed | run time | read back: [`Type2Error::NotApplied`]; when the value asked for is the one already reported (the default aperture, the window maximum), another valid value is set and read back first, so a swallowed failure cannot pass for success ([`Type2Error::Unverifiable`] where no other value exists) |
//! | a bank count no configuration can serve (more banks than windows) | run time | [`Type2Error::BankCount`]; no allocation is sized by the count before the check |
//! | a swallowed `MAP_MSI_BANK` failure | not detectable | the SDK kernel has no read-back for banks: the crate's record is all there is (the kernel then refuses MSI with `EINVAL`) |
//! | MSI bank index < `GET_MSI_BANK_COUNT` (`ENODEV`) | run time | [`Type2Error::BankIndex`] |
//! | one window per bank; bank mapped once | run time | [`Type2Error::WindowBusy`], [`Type2Error::BankMapped`] |
//! | DMA iova window-aligned, whole windows, inside the aperture | run time | [`Type2Error::WindowUnaligned`], [`Type2Error::PartialWindows`], [`Type2Error::OutsideAperture`] |
//! | DMA and MSI windows never collide (`EBUSY`) | run time | [`Type2Error::WindowBusy`] naming the holder |
//! | each window physically contiguous (`EFAULT`) | compile time + run time | only a [`ContiguousBuffer`] maps (`pamu_map_plain_buffer`); [`Type2Error::NotContiguous`] if its contiguity is below the window size |
//! | MSI/MSI-X enable only after the banks are mapped (`EINVAL`) | run time | [`crate::DeviceError::MsiBanksUnmapped`], raised before `SET_IRQS` |
//! | `UNMAP_DMA` flags 0; last unmap disables the domain | by construction | the guards unmap exactly what they mapped |
//! | `GET_INFO` is not served (`ENOTTY`) | compile time | no `iommu_info` on `Container<Type2<_>>` (`pamu_iommu_info`) |
//! | a plain `DmaBuffer` cannot back a PAMU window | compile time | `map` takes `&ContiguousBuffer` (`pamu_map_plain_buffer`) |
//!
//! MSI-before-banks stays a run-time check: a [`Device`] is not tied to the
//! container it came from (it may be adopted from an fd, and the iommufd path
//! has no container), so its type cannot carry the container's bank state.
//! A device opened through a PAMU container carries the container's bank
//! bookkeeping and refuses MSI/MSI-X until every bank is mapped.
//!
//! The compile-time rules are proved by the compile-fail cases named in
//! brackets (`tests/compile-fail/`); the run-time ones by `tests/type2.rs`,
//! on the simulated kernel in both its strict and its SDK mode, and the
//! simulated driver's own rules by its unit tests.
//!
//! ## Physical contiguity
//!
//! The kernel needs every window backed by physically contiguous memory. A
//! [`ContiguousBuffer::huge`] is `MAP_HUGETLB` memory of one huge-page size:
//! a huge page is physically contiguous and aligned to its size, the buffer
//! starts on a huge-page boundary, and windows are powers of two, so when the
//! window size is at most the huge-page size (checked:
//! [`Type2Error::NotContiguous`]) every window lies inside one huge page.
//! The simulator cannot see physical pages: it hands out
//! [`Simulator::contiguous_buffer`](crate::sim::Simulator::contiguous_buffer)
//! buffers that it *treats* as contiguous in chunks of a given size (ordinary
//! pages underneath); the same window-size check applies to them, and the
//! PAMU mapping refuses them on a real kernel ([`Type2Error::SimulatedBuffer`]).
//!
//! ## Example
//!
//! ```
//! use typed_vfio::sim::{PamuMode, SimDevice, SimGroup, Simulator};
//! use typed_vfio::{Aperture, DmaAccess};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::builder()
//!     .pamu(PamuMode::Sdk)
//!     .msi_banks(1)
//!     .group(SimGroup::new(1).device(SimDevice::edu("0000:01:00.0")))
//!     .build()?;
//! let platform = sim.pamu_platform()?; // PamuPlatform::detect() on hardware
//! let container = sim.open_container()?
//!     .attach(sim.open_group(1)?)?
//!     .set_iommu_type2(platform)?
//!     .set_geometry(Aperture::new(0x100_0000, 0x10_0000)?)?
//!     .set_windows(16)?; // 64 KiB windows
//! let bank = container.map_msi_bank(0, 0x10f_0000)?; // the last window
//! let buffer = sim.contiguous_buffer(0x2_0000, 0x1_0000)?;
//! let dma = container.map(&buffer, 0x100_0000, DmaAccess::ReadWrite)?;
//! assert_eq!(dma.windows(), 0..2);
//! drop((dma, bank));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::{FromBytes, IntoBytes};

use crate::container::{
    Attached, Container, ContainerState, HasGroups, SetIommuError, sealed::Sealed,
};
use crate::device::Device;
use crate::dma::{DmaAccess, DmaBuffer, Orphans, UnmapError, try_unmap_with, unmap_dma_arg};
use crate::error::{ContainerError, DeviceError, DmaError, Errno, GroupError};
use crate::kernel::{Arg, Kernel, req};
use crate::sys;

/// The smallest aperture, and an MSI doorbell page.
const PAGE_4K: u64 = 4096;
/// The most windows any PAMU has.
pub const MAX_WINDOWS: u32 = 256;

/// The two ids the PAMU IOMMU shipped under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PamuId {
    /// `VFIO_FSL_PAMU_IOMMU` of the Freescale SDK 3.8.13 tree: 2 (also
    /// upstream's `VFIO_SPAPR_TCE_IOMMU`).
    Sdk = sys::VFIO_FSL_PAMU_IOMMU_SDK,
    /// `VFIO_FSL_PAMU_IOMMU` of the OpenIL tree: 7 (also upstream's
    /// `VFIO_SPAPR_TCE_v2_IOMMU`).
    OpenIl = sys::VFIO_FSL_PAMU_IOMMU_OPENIL,
}

/// PAMU configuration stage: IOMMU set, nothing configured (type state).
#[derive(Debug)]
pub struct Fresh;
/// PAMU configuration stage: aperture set, windows not yet (type state).
#[derive(Debug)]
pub struct HasGeometry;
/// PAMU configuration stage: aperture and windows set; mappings allowed
/// (type state).
#[derive(Debug)]
pub struct Ready;

/// A PAMU configuration stage: [`Fresh`], [`HasGeometry`] or [`Ready`].
/// Sealed.
pub trait Type2Stage: Sealed {}
impl Sealed for Fresh {}
impl Sealed for HasGeometry {}
impl Sealed for Ready {}
impl Type2Stage for Fresh {}
impl Type2Stage for HasGeometry {}
impl Type2Stage for Ready {}

/// The PAMU ("type2") IOMMU model at configuration stage `G` (type state).
pub struct Type2<G: Type2Stage>(PhantomData<G>);

impl<G: Type2Stage> fmt::Debug for Type2<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(core::any::type_name::<Self>())
    }
}

impl<G: Type2Stage> Sealed for Type2<G> {}
impl<G: Type2Stage> ContainerState for Type2<G> {}
impl<G: Type2Stage> HasGroups for Type2<G> {}

/// Proof that this machine has a PAMU, so that the ids 2 and 7 mean the PAMU
/// driver and not sPAPR's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PamuPlatform {
    _private: (),
}

/// Where the device tree is exposed.
const DEVICE_TREES: [&str; 2] = ["/proc/device-tree", "/sys/firmware/devicetree/base"];

impl PamuPlatform {
    /// Looks for a device-tree node whose `compatible` lists `"fsl,pamu"`
    /// under `/proc/device-tree`, then `/sys/firmware/devicetree/base`.
    pub fn detect() -> Result<PamuPlatform, Type2Error> {
        let mut searched = Vec::new();
        for root in DEVICE_TREES {
            let root = Path::new(root);
            if let Some(p) = Self::detect_in(root) {
                return Ok(p);
            }
            searched.push(root.to_path_buf());
        }
        Err(Type2Error::NoPamuNode { searched })
    }

    /// Looks for a `compatible` property listing `"fsl,pamu"` in the device
    /// tree rooted at `root` (at most 6 levels deep).
    pub fn detect_in(root: &Path) -> Option<PamuPlatform> {
        fn walk(dir: &Path, depth: u32) -> bool {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return false;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if depth < 6 && walk(&path, depth + 1) {
                        return true;
                    }
                } else if entry.file_name() == "compatible"
                    && std::fs::read(&path).is_ok_and(|b| compatible_lists_pamu(&b))
                {
                    return true;
                }
            }
            false
        }
        walk(root, 0).then_some(PamuPlatform { _private: () })
    }

    /// Checks one node's `compatible` property (NUL-separated strings).
    #[cfg(feature = "sim")]
    pub(crate) fn from_compatible(
        compatible: &[u8],
        node: &str,
    ) -> Result<PamuPlatform, Type2Error> {
        if compatible_lists_pamu(compatible) {
            Ok(PamuPlatform { _private: () })
        } else {
            Err(Type2Error::NoPamuNode {
                searched: vec![PathBuf::from(node)],
            })
        }
    }

    /// The explicit opt-in: the caller states that this kernel is a
    /// Freescale/NXP SDK kernel on a QorIQ SoC with the PAMU driver (for
    /// systems without a device tree in `/proc` or `/sys`).
    ///
    /// # Safety
    ///
    /// The kernel's IOMMU ids 2 and 7 must select the Freescale PAMU driver
    /// on this machine. On an IBM POWER host the same ids select the sPAPR
    /// TCE IOMMU, and the PAMU request numbers are sPAPR's there
    /// (`VFIO_IOMMU_ENABLE`, `VFIO_IOMMU_DISABLE`,
    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY`, ...): `GET_MSI_BANK_COUNT`, issued
    /// with no argument, would reach `SPAPR_REGISTER_MEMORY`, which reads a
    /// user pointer from its argument, and `MAP_MSI_BANK`'s bytes would be
    /// read as another structure. Prefer [`detect`](Self::detect), which
    /// proves the PAMU from the device tree.
    pub unsafe fn assume_present() -> PamuPlatform {
        PamuPlatform { _private: () }
    }
}

fn compatible_lists_pamu(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == 0).any(|s| s == b"fsl,pamu")
}

/// A PAMU aperture: `start..start + size`, size a power of two of at least
/// 4 KiB, start aligned to the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aperture {
    start: u64,
    size: u64,
}

impl Aperture {
    /// Checks the kernel's rules for an aperture.
    pub fn new(start: u64, size: u64) -> Result<Aperture, Type2Error> {
        let end = start.checked_add(size.wrapping_sub(1));
        if !size.is_power_of_two() || size < PAGE_4K || end.is_none() {
            return Err(Type2Error::ApertureSize { start, size });
        }
        if !start.is_multiple_of(size) {
            return Err(Type2Error::ApertureUnaligned { start, size });
        }
        Ok(Aperture { start, size })
    }

    /// The first IOVA.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The last IOVA (inclusive), as the kernel stores it.
    pub fn end(&self) -> u64 {
        self.start + (self.size - 1)
    }

    /// Whether `iova..iova + len` lies inside.
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        len > 0
            && iova >= self.start
            && iova
                .checked_add(len - 1)
                .is_some_and(|last| last <= self.end())
    }
}

/// A cache a PAMU stash target names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StashCache {
    /// L1 (`VFIO_PAMU_STASH_L1`).
    L1 = sys::VFIO_PAMU_STASH_L1,
    /// L2.
    L2 = sys::VFIO_PAMU_STASH_L2,
    /// L3.
    L3 = sys::VFIO_PAMU_STASH_L3,
}

/// What holds a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowHolder {
    /// A DMA mapping at this IOVA.
    Dma {
        /// The mapping's IOVA.
        iova: u64,
    },
    /// MSI bank `index`.
    MsiBank {
        /// The bank.
        index: u32,
    },
}

impl fmt::Display for WindowHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowHolder::Dma { iova } => write!(f, "the DMA mapping at {iova:#x}"),
            WindowHolder::MsiBank { index } => write!(f, "MSI bank {index}"),
        }
    }
}

/// PAMU configuration and mapping errors. Kernel failures carry the ioctl
/// and errno; rule violations carry the values, and are raised before any
/// ioctl, so they are the same whether the kernel would have reported or
/// swallowed them.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Type2Error {
    /// A PAMU ioctl failed.
    #[error("{ioctl} ({what} {value:#x}) failed: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// What `value` is (`"geometry start"`, `"windows"`, `"bank"`, ...).
        what: &'static str,
        /// The value the call was about.
        value: u64,
        /// The errno.
        errno: Errno,
    },
    /// A DMA ioctl failed.
    #[error(transparent)]
    Dma(#[from] DmaError),
    /// `SET_ATTR` returned 0 but `GET_ATTR` reads back another value (the SDK
    /// kernel swallows `SET_ATTR` errors).
    #[error(
        "VFIO_IOMMU_PAMU_SET_ATTR({attribute}) was not applied: wrote {wrote:#x?}, read back {read:#x?}"
    )]
    NotApplied {
        /// `"GEOMETRY"`, `"WINDOWS"` or `"PAMU_STASH"`.
        attribute: &'static str,
        /// What was written.
        wrote: (u64, u64),
        /// What `GET_ATTR` returned.
        read: (u64, u64),
    },
    /// No device-tree node is compatible with `"fsl,pamu"`.
    #[error("no device-tree node compatible with \"fsl,pamu\" under {searched:?}")]
    NoPamuNode {
        /// The trees searched.
        searched: Vec<PathBuf>,
    },
    /// Neither PAMU id is offered by `VFIO_CHECK_EXTENSION`.
    #[error("the kernel offers neither PAMU id (2 or 7)")]
    NoPamuDriver,
    /// The aperture size is not a power of two of at least 4 KiB (or wraps).
    #[error("aperture size {size:#x} at {start:#x}: not a power of two ≥ 4 KiB, or wraps")]
    ApertureSize {
        /// The start asked for.
        start: u64,
        /// The size asked for.
        size: u64,
    },
    /// The aperture start is not aligned to its size.
    #[error("aperture start {start:#x} is not aligned to its size {size:#x}")]
    ApertureUnaligned {
        /// The start asked for.
        start: u64,
        /// The size.
        size: u64,
    },
    /// A window count that is not a power of two in `1..=max`.
    #[error("{windows} windows: must be a power of two from 1 to {max}")]
    WindowCount {
        /// The count asked for.
        windows: u32,
        /// The maximum (read back from the kernel, at most 256).
        max: u32,
    },
    /// An MSI bank index at or past the bank count.
    #[error("MSI bank {index} does not exist: the platform has {count}")]
    BankIndex {
        /// The index asked for.
        index: u32,
        /// `GET_MSI_BANK_COUNT`.
        count: u32,
    },
    /// The bank is mapped already.
    #[error("MSI bank {index} is already mapped at {iova:#x}")]
    BankMapped {
        /// The bank.
        index: u32,
        /// Where it is mapped.
        iova: u64,
    },
    /// The range leaves the aperture.
    #[error("iova {iova:#x} size {size:#x} is outside the aperture {start:#x}..={end:#x}")]
    OutsideAperture {
        /// The IOVA.
        iova: u64,
        /// The size.
        size: u64,
        /// Aperture start.
        start: u64,
        /// Aperture end (inclusive).
        end: u64,
    },
    /// A DMA IOVA that does not start a window.
    #[error("iova {iova:#x} does not start a window (window size {window_size:#x})")]
    WindowUnaligned {
        /// The IOVA.
        iova: u64,
        /// The window size.
        window_size: u64,
    },
    /// A DMA size that is not a whole number of windows.
    #[error("size {size:#x} is not a whole number of windows of {window_size:#x}")]
    PartialWindows {
        /// The size.
        size: u64,
        /// The window size.
        window_size: u64,
    },
    /// A window already holds a mapping.
    #[error("window {window} (iova {iova:#x}) is held by {holder}")]
    WindowBusy {
        /// The IOVA asked for.
        iova: u64,
        /// The window index.
        window: u64,
        /// What holds it.
        holder: WindowHolder,
    },
    /// The buffer is not contiguous over a whole window.
    #[error(
        "buffer contiguous in chunks of {contiguity:#x} cannot back windows of {window_size:#x}"
    )]
    NotContiguous {
        /// The buffer's guaranteed contiguous chunk.
        contiguity: u64,
        /// The window size.
        window_size: u64,
    },
    /// A simulator's contiguous buffer given to a real kernel.
    #[error("a simulated contiguous buffer cannot back DMA on a real kernel")]
    SimulatedBuffer,
    /// A huge-page size that is not a power of two of at least a page.
    #[error("huge page size {size:#x} is not a power of two of at least a page")]
    HugePageSize {
        /// The size given.
        size: u64,
    },
    /// The geometry or the windows cannot change while the crate knows of a
    /// mapping that may still be in the kernel: a guard was leaked
    /// (`mem::forget`) or its unmap failed. The kernel refuses the change for
    /// DMA (`EBUSY`) and would silently discard an MSI bank's window.
    #[error("cannot reconfigure the PAMU: window {window} is still held by {holder}")]
    MappingsAlive {
        /// The first window still held.
        window: u64,
        /// What holds it.
        holder: WindowHolder,
    },
    /// `GET_MSI_BANK_COUNT` answered a count no configuration can serve
    /// (more banks than the PAMU has windows).
    #[error("GET_MSI_BANK_COUNT answered {count} banks, more than the {max} windows")]
    BankCount {
        /// The count the kernel answered.
        count: u32,
        /// The window maximum.
        max: u32,
    },
    /// The value asked for is what the kernel already reports, and no other
    /// valid value exists to prove that a `SET_ATTR` is applied (the SDK
    /// kernel answers 0 whatever happened).
    #[error(
        "VFIO_IOMMU_PAMU_SET_ATTR({attribute}) cannot be verified: the value is already reported and no other value can be tried"
    )]
    Unverifiable {
        /// `"GEOMETRY"`, `"WINDOWS"` or `"PAMU_STASH"`.
        attribute: &'static str,
    },
}

/// A failed PAMU transition: the container, in its stage, and why.
#[derive(Debug, thiserror::Error)]
#[error("PAMU configuration failed: {error}")]
pub struct Type2TransitionError<G: Type2Stage> {
    /// The container, unchanged as far as the crate could verify.
    pub container: Container<Type2<G>>,
    /// Why.
    #[source]
    pub error: Type2Error,
}

/// The crate's record of the windows and banks in use.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    /// `banks[i]`: the IOVA bank `i` is mapped at.
    banks: Vec<Option<u64>>,
    /// `banks` has the platform's bank count (false while the read of
    /// `GET_MSI_BANK_COUNT` has not succeeded: `banks` is then empty).
    banks_known: bool,
    /// Window index → holder.
    windows: Vec<(u64, WindowHolder)>,
}

/// A PAMU container's configuration, as set and read back.
#[derive(Debug, Default)]
pub(crate) struct Type2State {
    id: u32,
    aperture: Option<Aperture>,
    windows: u32,
    max_windows: u32,
    occupancy: Arc<Mutex<Occupancy>>,
}

fn lock(m: &Mutex<Occupancy>) -> MutexGuard<'_, Occupancy> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A device's view of its PAMU container's MSI banks.
#[derive(Clone, Debug)]
pub(crate) struct MsiGate(Arc<Mutex<Occupancy>>);

impl MsiGate {
    /// Refuses MSI/MSI-X until every bank is mapped.
    pub(crate) fn check(&self, index: u32) -> Result<(), DeviceError> {
        if index != sys::VFIO_PCI_MSI_IRQ_INDEX && index != sys::VFIO_PCI_MSIX_IRQ_INDEX {
            return Ok(());
        }
        let occ = lock(&self.0);
        let count = occ.banks.len() as u32;
        let mapped = occ.banks.iter().filter(|b| b.is_some()).count() as u32;
        if count == 0 || mapped < count {
            return Err(DeviceError::MsiBanksUnmapped {
                index,
                mapped,
                count,
            });
        }
        Ok(())
    }
}

/// A `vfio_pamu_attr` as bytes (bindgen's struct holds a union, which
/// cannot be viewed as bytes: no `IntoBytes`): argsz @0, flags @4, attribute @8, the
/// union at [`U`] (16; 12 on i386, where a `__u64` is 4-aligned).
const ATTR_SIZE: usize = size_of::<sys::vfio_pamu_attr>();
/// The union's offset in `vfio_pamu_attr` on this target.
const U: usize = sys::layout::PAMU_ATTR_INFO;

fn attr(attribute: u32) -> [u8; ATTR_SIZE] {
    let mut a = [0u8; ATTR_SIZE];
    a[0..4].copy_from_slice(&(ATTR_SIZE as u32).to_ne_bytes());
    a[8..12].copy_from_slice(&attribute.to_ne_bytes());
    a
}

/// The two values of an attribute's union.
fn attr_values(bytes: &[u8; ATTR_SIZE], attribute: u32) -> (u64, u64) {
    let word = |at: usize| {
        u32::read_from_bytes(&bytes[at..at + 4])
            .map(u64::from)
            .unwrap_or(0)
    };
    let dword = |at: usize| u64::read_from_bytes(&bytes[at..at + 8]).unwrap_or(0);
    match attribute {
        sys::VFIO_ATTR_GEOMETRY => (dword(U), dword(U + 8)),
        sys::VFIO_ATTR_WINDOWS => (word(U), 0),
        _ => (word(U), word(U + 4)),
    }
}

fn attr_with(attribute: u32, v: (u64, u64)) -> [u8; ATTR_SIZE] {
    let mut bytes = attr(attribute);
    match attribute {
        sys::VFIO_ATTR_GEOMETRY => {
            bytes[U..U + 8].copy_from_slice(&v.0.to_ne_bytes());
            bytes[U + 8..U + 16].copy_from_slice(&v.1.to_ne_bytes());
        }
        sys::VFIO_ATTR_WINDOWS => bytes[U..U + 4].copy_from_slice(&(v.0 as u32).to_ne_bytes()),
        _ => {
            bytes[U..U + 4].copy_from_slice(&(v.0 as u32).to_ne_bytes());
            bytes[U + 4..U + 8].copy_from_slice(&(v.1 as u32).to_ne_bytes());
        }
    }
    bytes
}

fn attr_name(attribute: u32) -> &'static str {
    match attribute {
        sys::VFIO_ATTR_GEOMETRY => "GEOMETRY",
        sys::VFIO_ATTR_WINDOWS => "WINDOWS",
        _ => "PAMU_STASH",
    }
}

impl Container<Attached> {
    /// Selects the PAMU IOMMU (`VFIO_CHECK_EXTENSION` of the OpenIL id 7,
    /// then the SDK id 2; `VFIO_SET_IOMMU` with the one offered), then reads
    /// the window maximum (`GET_ATTR(WINDOWS)`) and the MSI bank count (if
    /// that read fails, the first [`map_msi_bank`](Container::map_msi_bank)
    /// reads it again; until then MSI is refused).
    /// `platform` proves the ids mean PAMU here, not sPAPR. On failure the
    /// container comes back unchanged.
    #[doc(alias = "VFIO_SET_IOMMU")]
    pub fn set_iommu_type2(
        self,
        platform: PamuPlatform,
    ) -> Result<Container<Type2<Fresh>>, SetIommuError> {
        let _ = platform;
        let fail = |container, error| Err(SetIommuError { container, error });
        let mut id = None;
        for candidate in [PamuId::OpenIl, PamuId::Sdk] {
            match self.check_extension(candidate as u32) {
                Ok(true) => {
                    id = Some(candidate as u32);
                    break;
                }
                Ok(false) => {}
                Err(e) => return fail(self, e),
            }
        }
        let Some(id) = id else {
            return fail(
                self,
                ContainerError::Unsupported {
                    model: "VFIO_FSL_PAMU_IOMMU",
                    id: PamuId::Sdk as u32,
                },
            );
        };
        if let Err(errno) = self.inner.kernel.ioctl(
            self.inner.fd.as_fd(),
            req::VFIO_SET_IOMMU,
            Arg::Int(id as i32),
        ) {
            return fail(
                self,
                ContainerError::Ioctl {
                    ioctl: req::VFIO_SET_IOMMU.name,
                    errno,
                },
            );
        }
        let mut container: Container<Type2<Fresh>> = self.into_state();
        let max = container
            .get_attr(sys::VFIO_ATTR_WINDOWS)
            .map(|(w, _)| w as u32)
            .unwrap_or(MAX_WINDOWS)
            .min(MAX_WINDOWS);
        container.inner.type2.max_windows = max;
        // If this read fails, or answers a count no configuration can serve,
        // the count stays unknown (MSI refused) and is read again by the
        // first `map_msi_bank`, which reports the failure. No allocation is
        // sized by it before it is checked.
        let banks = container.msi_bank_count().ok();
        container.inner.type2 = Type2State {
            id,
            aperture: None,
            windows: 0,
            max_windows: max,
            occupancy: Arc::new(Mutex::new(Occupancy {
                banks: vec![None; banks.unwrap_or(0) as usize],
                banks_known: banks.is_some(),
                windows: Vec::new(),
            })),
        };
        Ok(container)
    }
}

impl<G: Type2Stage> Container<Type2<G>> {
    fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    fn get_attr(&self, attribute: u32) -> Result<(u64, u64), Type2Error> {
        let mut a = attr(attribute);
        self.kernel()
            .ioctl(
                self.as_fd(),
                req::VFIO_IOMMU_PAMU_GET_ATTR,
                Arg::InOut(&mut a),
            )
            .map_err(|errno| Type2Error::Ioctl {
                ioctl: req::VFIO_IOMMU_PAMU_GET_ATTR.name,
                what: "attribute",
                value: u64::from(attribute),
                errno,
            })?;
        Ok(attr_values(&a, attribute))
    }

    /// Sets `v` so that success is proved: the SDK kernel answers 0 even when
    /// it did not apply a value, and when `v` is what `GET_ATTR` reports
    /// already, reading it back would prove nothing. Then `probe` (another
    /// valid value) is set and verified first, and `v` after it. With no
    /// probe possible the call fails ([`Type2Error::Unverifiable`]).
    fn set_attr_proved(
        &self,
        attribute: u32,
        v: (u64, u64),
        probe: Option<(u64, u64)>,
    ) -> Result<(), Type2Error> {
        if self.get_attr(attribute).ok() == Some(v) {
            let probe = probe.filter(|p| *p != v).ok_or(Type2Error::Unverifiable {
                attribute: attr_name(attribute),
            })?;
            self.set_attr(attribute, probe)?;
        }
        self.set_attr(attribute, v)
    }

    /// `SET_ATTR`, then `GET_ATTR` and compare: the SDK kernel returns 0
    /// even when it did not apply the value.
    fn set_attr(&self, attribute: u32, v: (u64, u64)) -> Result<(), Type2Error> {
        let a = attr_with(attribute, v);
        self.kernel()
            .ioctl(self.as_fd(), req::VFIO_IOMMU_PAMU_SET_ATTR, Arg::In(&a))
            .map_err(|errno| Type2Error::Ioctl {
                ioctl: req::VFIO_IOMMU_PAMU_SET_ATTR.name,
                what: attr_name(attribute),
                value: v.0,
                errno,
            })?;
        let read = self.get_attr(attribute)?;
        if read != v {
            return Err(Type2Error::NotApplied {
                attribute: attr_name(attribute),
                wrote: v,
                read,
            });
        }
        Ok(())
    }

    /// The aperture the kernel reports (`GET_ATTR(GEOMETRY)`; before
    /// configuration, the default [0, 2^36 - 1]).
    #[doc(alias = "VFIO_IOMMU_PAMU_GET_ATTR")]
    pub fn geometry(&self) -> Result<(u64, u64), Type2Error> {
        self.get_attr(sys::VFIO_ATTR_GEOMETRY)
    }

    /// The window count the kernel reports (`GET_ATTR(WINDOWS)`; before
    /// configuration, the hardware maximum).
    pub fn window_count(&self) -> Result<u32, Type2Error> {
        self.get_attr(sys::VFIO_ATTR_WINDOWS).map(|(w, _)| w as u32)
    }

    /// The window maximum read when the IOMMU was set (at most 256).
    pub fn max_windows(&self) -> u32 {
        self.inner.type2.max_windows
    }

    /// The PAMU id the container was set to (2 or 7).
    pub fn pamu_id(&self) -> u32 {
        self.inner.type2.id
    }

    /// How many MSI banks the platform has
    /// (`VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT`'s return value): keep that many
    /// windows free for them. A count larger than the window maximum can
    /// never be served: [`Type2Error::BankCount`].
    #[doc(alias = "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT")]
    pub fn msi_bank_count(&self) -> Result<u32, Type2Error> {
        let n = self
            .kernel()
            .ioctl(
                self.as_fd(),
                req::VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT,
                Arg::None,
            )
            .map_err(|errno| Type2Error::Ioctl {
                ioctl: req::VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT.name,
                what: "none",
                value: 0,
                errno,
            })?;
        // A successful ioctl returns a non-negative value.
        let count = u32::try_from(n).unwrap_or(0);
        let max = match self.inner.type2.max_windows {
            0 => MAX_WINDOWS,
            m => m.min(MAX_WINDOWS),
        };
        if count > max {
            return Err(Type2Error::BankCount { count, max });
        }
        Ok(count)
    }

    /// Opens a device by name from the attached groups
    /// (`VFIO_GROUP_GET_DEVICE_FD`). The device refuses MSI/MSI-X
    /// ([`DeviceError::MsiBanksUnmapped`]) until every MSI bank of this
    /// container is mapped.
    #[doc(alias = "VFIO_GROUP_GET_DEVICE_FD")]
    pub fn open_device(&self, name: &str) -> Result<Device, GroupError> {
        let mut device = self.open_device_any(name)?;
        device.set_msi_gate(MsiGate(self.inner.type2.occupancy.clone()));
        Ok(device)
    }

    /// Refuses a reconfiguration while the crate knows of a window that may
    /// still be mapped in the kernel (a leaked guard, a failed unmap).
    fn check_unmapped(&self) -> Result<(), Type2Error> {
        let occ = lock(&self.inner.type2.occupancy);
        match occ.windows.iter().min_by_key(|(w, _)| *w) {
            Some(&(window, holder)) => Err(Type2Error::MappingsAlive { window, holder }),
            None => Ok(()),
        }
    }

    fn configure_geometry(
        self,
        aperture: Aperture,
    ) -> Result<Container<Type2<HasGeometry>>, Type2TransitionError<G>> {
        let v = (aperture.start(), aperture.end());
        // Another valid aperture, to prove the kernel applies sets when `v`
        // is what it reports already (the default [0, 2^36 - 1]).
        let probe = if v == (0, PAGE_4K - 1) {
            (0, 2 * PAGE_4K - 1)
        } else {
            (0, PAGE_4K - 1)
        };
        let result = self
            .check_unmapped()
            .and_then(|()| self.set_attr_proved(sys::VFIO_ATTR_GEOMETRY, v, Some(probe)));
        if let Err(error) = result {
            return Err(Type2TransitionError {
                container: self,
                error,
            });
        }
        let mut c: Container<Type2<HasGeometry>> = self.into_state();
        c.inner.type2.aperture = Some(aperture);
        c.inner.type2.windows = 0;
        Ok(c)
    }
}

impl Container<Type2<Fresh>> {
    /// Sets the aperture (`SET_ATTR(GEOMETRY)`, read back with `GET_ATTR`).
    #[doc(alias = "VFIO_IOMMU_PAMU_SET_ATTR")]
    pub fn set_geometry(
        self,
        aperture: Aperture,
    ) -> Result<Container<Type2<HasGeometry>>, Type2TransitionError<Fresh>> {
        self.configure_geometry(aperture)
    }
}

impl Container<Type2<HasGeometry>> {
    /// Sets the aperture again.
    pub fn set_geometry(
        self,
        aperture: Aperture,
    ) -> Result<Container<Type2<HasGeometry>>, Type2TransitionError<HasGeometry>> {
        self.configure_geometry(aperture)
    }

    /// Splits the aperture into `windows` windows (`SET_ATTR(WINDOWS)`, read
    /// back): a power of two from 1 to [`max_windows`](Self::max_windows).
    pub fn set_windows(
        self,
        windows: u32,
    ) -> Result<Container<Type2<Ready>>, Type2TransitionError<HasGeometry>> {
        self.configure_windows(windows)
    }
}

impl<G: Type2Stage> Container<Type2<G>> {
    fn configure_windows(
        self,
        windows: u32,
    ) -> Result<Container<Type2<Ready>>, Type2TransitionError<G>> {
        let max = self.inner.type2.max_windows;
        // Another valid count, to prove the kernel applies sets when
        // `windows` is what it reports already (the maximum, after a
        // geometry).
        let probe = match windows {
            1 if max >= 2 => Some((2, 0)),
            1 => None,
            _ => Some((1, 0)),
        };
        let checked = if !windows.is_power_of_two() || windows > max {
            Err(Type2Error::WindowCount { windows, max })
        } else {
            self.check_unmapped().and_then(|()| {
                self.set_attr_proved(sys::VFIO_ATTR_WINDOWS, (u64::from(windows), 0), probe)
            })
        };
        if let Err(error) = checked {
            return Err(Type2TransitionError {
                container: self,
                error,
            });
        }
        let mut c: Container<Type2<Ready>> = self.into_state();
        c.inner.type2.windows = windows;
        Ok(c)
    }
}

/// A live MSI-bank mapping; unmaps on drop
/// (`VFIO_IOMMU_PAMU_UNMAP_MSI_BANK`). Borrows the container.
///
/// If the kernel reports the unmap failed, the crate keeps the bank and its
/// window recorded as mapped (the doorbell may still be reachable), so the
/// geometry and windows cannot be changed ([`Type2Error::MappingsAlive`])
/// until the groups are released; [`try_unmap`](Self::try_unmap) hands the
/// guard back for a retry instead. (The SDK kernel answers 0 whatever
/// happened: there the record always goes.)
#[derive(Debug)]
#[must_use = "dropping the guard unmaps the MSI bank at once"]
pub struct MsiBankMapping<'a> {
    fd: BorrowedFd<'a>,
    kernel: &'a Kernel,
    occupancy: &'a Mutex<Occupancy>,
    index: u32,
    iova: u64,
    window: u64,
}

impl<'a> MsiBankMapping<'a> {
    /// The bank.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The IOVA it was mapped at.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The window holding it.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Unmaps now, reporting the kernel's answer (the SDK kernel answers 0
    /// whatever happened). On failure the bank and its window stay recorded
    /// as mapped; [`try_unmap`](Self::try_unmap) hands the guard back to
    /// retry.
    #[doc(alias = "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK")]
    pub fn unmap(self) -> Result<(), Type2Error> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unmap()
    }

    /// Unmaps now; on failure the guard comes back in the error.
    #[doc(alias = "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK")]
    pub fn try_unmap(self) -> Result<(), UnmapError<MsiBankMapping<'a>, Type2Error>> {
        try_unmap_with(self, Self::do_unmap)
    }

    fn do_unmap(&self) -> Result<(), Type2Error> {
        let arg = sys::vfio_pamu_msi_bank_unmap {
            argsz: size_of::<sys::vfio_pamu_msi_bank_unmap>() as u32,
            flags: 0,
            iova: self.iova,
        };
        self.kernel
            .ioctl(
                self.fd,
                req::VFIO_IOMMU_PAMU_UNMAP_MSI_BANK,
                Arg::In(arg.as_bytes()),
            )
            .map_err(|errno| Type2Error::Ioctl {
                ioctl: req::VFIO_IOMMU_PAMU_UNMAP_MSI_BANK.name,
                what: "iova",
                value: self.iova,
                errno,
            })?;
        // Only an unmap the kernel reported done clears the record: on doubt
        // the window stays held (the release of the groups clears it).
        let mut occ = lock(self.occupancy);
        if let Some(slot) = occ.banks.get_mut(self.index as usize) {
            *slot = None;
        }
        occ.windows.retain(|(w, _)| *w != self.window);
        Ok(())
    }
}

impl Drop for MsiBankMapping<'_> {
    fn drop(&mut self) {
        let _ = self.do_unmap();
    }
}

/// A live PAMU DMA mapping of a [`ContiguousBuffer`]; unmaps on drop
/// (`VFIO_IOMMU_UNMAP_DMA`). Borrows the container and the buffer.
///
/// If the unmap in `Drop` fails, its windows stay recorded as held and the
/// container keeps the buffer's pages until the groups are released (the
/// kernel then drops every mapping); [`try_unmap`](Self::try_unmap) hands the
/// guard back for a retry instead.
#[derive(Debug)]
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct PamuMapping<'a> {
    fd: BorrowedFd<'a>,
    kernel: &'a Kernel,
    occupancy: &'a Mutex<Occupancy>,
    orphans: &'a Orphans,
    buffer: &'a DmaBuffer,
    iova: u64,
    size: u64,
    windows: std::ops::Range<u64>,
}

impl<'a> PamuMapping<'a> {
    /// The IOVA the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }
    /// The mapped size (whole windows).
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The window indexes it holds.
    pub fn windows(&self) -> std::ops::Range<u64> {
        self.windows.clone()
    }

    /// Unmaps now, reporting the kernel's answer. On failure the windows stay
    /// held and the container keeps the buffer's pages until the groups are
    /// released; [`try_unmap`](Self::try_unmap) hands the guard back to
    /// retry.
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn unmap(self) -> Result<(), Type2Error> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unmap().inspect_err(|_| this.orphan())
    }

    /// Unmaps now; on failure the guard comes back in the error.
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn try_unmap(self) -> Result<(), UnmapError<PamuMapping<'a>, Type2Error>> {
        try_unmap_with(self, Self::do_unmap)
    }

    #[cold]
    fn orphan(&self) {
        self.orphans
            .adopt(self.iova, self.size, self.buffer.pages.clone());
    }

    fn do_unmap(&self) -> Result<(), Type2Error> {
        let mut arg = unmap_dma_arg(self.iova, self.size, 0);
        self.kernel
            .ioctl(
                self.fd,
                req::VFIO_IOMMU_UNMAP_DMA,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map_err(|errno| DmaError::Ioctl {
                ioctl: req::VFIO_IOMMU_UNMAP_DMA.name,
                iova: self.iova,
                size: self.size,
                errno,
            })?;
        lock(self.occupancy)
            .windows
            .retain(|(w, _)| !self.windows.contains(w));
        self.buffer.release();
        Ok(())
    }
}

impl Drop for PamuMapping<'_> {
    fn drop(&mut self) {
        // Drop must not fail: on failure the windows stay held and the
        // container keeps the pages until the groups leave.
        if self.do_unmap().is_err() {
            self.orphan();
        }
    }
}

impl Container<Type2<Ready>> {
    /// The aperture set.
    pub fn aperture(&self) -> Aperture {
        // Ready implies an aperture was set; the fallback is unreachable.
        self.inner.type2.aperture.unwrap_or(Aperture {
            start: 0,
            size: 1 << 36,
        })
    }

    /// The number of windows set.
    pub fn windows(&self) -> u32 {
        self.inner.type2.windows
    }

    /// The window size: aperture size / windows.
    pub fn window_size(&self) -> u64 {
        self.aperture().size() / u64::from(self.windows().max(1))
    }

    /// Which window holds `iova` (`None` outside the aperture).
    pub fn window_of(&self, iova: u64) -> Option<u64> {
        let a = self.aperture();
        a.contains(iova, 1)
            .then(|| (iova - a.start()) / self.window_size())
    }

    /// What holds each busy window, by window index.
    pub fn windows_in_use(&self) -> Vec<(u64, WindowHolder)> {
        let mut v = lock(&self.inner.type2.occupancy).windows.clone();
        v.sort_by_key(|(w, _)| *w);
        v
    }

    /// Sets the aperture again (the windows must then be set again).
    pub fn set_geometry(
        self,
        aperture: Aperture,
    ) -> Result<Container<Type2<HasGeometry>>, Type2TransitionError<Ready>> {
        self.configure_geometry(aperture)
    }

    /// Sets the window count again (discards nothing the crate tracks: no
    /// mapping guard can be alive).
    pub fn set_windows(
        self,
        windows: u32,
    ) -> Result<Container<Type2<Ready>>, Type2TransitionError<Ready>> {
        self.configure_windows(windows)
    }

    /// Sets the stash target (`SET_ATTR(PAMU_STASH)`, read back): where the
    /// PAMU stashes DMA data.
    pub fn set_stash(&mut self, cpu: u32, cache: StashCache) -> Result<(), Type2Error> {
        let other = if cache == StashCache::L1 {
            StashCache::L2
        } else {
            StashCache::L1
        };
        self.set_attr_proved(
            sys::VFIO_ATTR_PAMU_STASH,
            (u64::from(cpu), cache as u32 as u64),
            Some((u64::from(cpu), other as u32 as u64)),
        )
    }

    fn check_windows_free(
        &self,
        occ: &Occupancy,
        iova: u64,
        windows: std::ops::Range<u64>,
    ) -> Result<(), Type2Error> {
        for (w, holder) in &occ.windows {
            if windows.contains(w) {
                return Err(Type2Error::WindowBusy {
                    iova,
                    window: *w,
                    holder: *holder,
                });
            }
        }
        Ok(())
    }

    /// Maps MSI bank `index`'s doorbell into the window containing `iova`
    /// (`VFIO_IOMMU_PAMU_MAP_MSI_BANK` with read and write), before MSI is
    /// enabled on any device. The index, the window and the bank are checked
    /// first and the mapping is recorded by the crate (the SDK kernel
    /// reports no error). If the bank count could not be read when the
    /// IOMMU was set, it is read first (`GET_MSI_BANK_COUNT`; its failure is
    /// this call's error).
    #[doc(alias = "VFIO_IOMMU_PAMU_MAP_MSI_BANK")]
    pub fn map_msi_bank(&self, index: u32, iova: u64) -> Result<MsiBankMapping<'_>, Type2Error> {
        let a = self.aperture();
        let occupancy = &*self.inner.type2.occupancy;
        if !lock(occupancy).banks_known {
            let count = self.msi_bank_count()?;
            let mut occ = lock(occupancy);
            occ.banks = vec![None; count as usize];
            occ.banks_known = true;
        }
        let mut occ = lock(occupancy);
        let count = occ.banks.len() as u32;
        match occ.banks.get(index as usize) {
            None => return Err(Type2Error::BankIndex { index, count }),
            Some(Some(at)) => return Err(Type2Error::BankMapped { index, iova: *at }),
            Some(None) => {}
        }
        let Some(window) = self.window_of(iova) else {
            return Err(Type2Error::OutsideAperture {
                iova,
                size: PAGE_4K,
                start: a.start(),
                end: a.end(),
            });
        };
        self.check_windows_free(&occ, iova, window..window + 1)?;
        // Built field by field from zeroes: the padding (none on i386) is
        // the target's.
        let mut arg = <sys::vfio_pamu_msi_bank_map as sys::FromBytes>::new_zeroed();
        arg.argsz = size_of::<sys::vfio_pamu_msi_bank_map>() as u32;
        arg.flags = sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE;
        arg.msi_bank_index = index;
        arg.iova = iova;
        self.kernel()
            .ioctl(
                self.as_fd(),
                req::VFIO_IOMMU_PAMU_MAP_MSI_BANK,
                Arg::In(arg.as_bytes()),
            )
            .map_err(|errno| Type2Error::Ioctl {
                ioctl: req::VFIO_IOMMU_PAMU_MAP_MSI_BANK.name,
                what: "bank",
                value: u64::from(index),
                errno,
            })?;
        if let Some(slot) = occ.banks.get_mut(index as usize) {
            *slot = Some(iova);
        }
        occ.windows.push((window, WindowHolder::MsiBank { index }));
        Ok(MsiBankMapping {
            fd: self.as_fd(),
            kernel: &self.inner.kernel,
            occupancy,
            index,
            iova,
            window,
        })
    }

    /// Maps the whole of `buffer` at `iova` (`VFIO_IOMMU_MAP_DMA`): `iova`
    /// must start a window, the buffer must be a whole number of windows,
    /// contiguous over each window, and the windows free.
    #[doc(alias = "VFIO_IOMMU_MAP_DMA")]
    pub fn map<'a>(
        &'a self,
        buffer: &'a ContiguousBuffer,
        iova: u64,
        access: DmaAccess,
    ) -> Result<PamuMapping<'a>, Type2Error> {
        let a = self.aperture();
        let ws = self.window_size();
        let size = buffer.buffer.len() as u64;
        if !a.contains(iova, size) {
            return Err(Type2Error::OutsideAperture {
                iova,
                size,
                start: a.start(),
                end: a.end(),
            });
        }
        if !(iova - a.start()).is_multiple_of(ws) {
            return Err(Type2Error::WindowUnaligned {
                iova,
                window_size: ws,
            });
        }
        if !size.is_multiple_of(ws) {
            return Err(Type2Error::PartialWindows {
                size,
                window_size: ws,
            });
        }
        if buffer.contiguity < ws {
            return Err(Type2Error::NotContiguous {
                contiguity: buffer.contiguity,
                window_size: ws,
            });
        }
        if buffer.simulated && !self.inner.kernel.is_sim() {
            return Err(Type2Error::SimulatedBuffer);
        }
        let first = (iova - a.start()) / ws;
        let windows = first..first + size / ws;
        let occupancy = &*self.inner.type2.occupancy;
        let mut occ = lock(occupancy);
        self.check_windows_free(&occ, iova, windows.clone())?;
        buffer.buffer.hold();
        // SAFETY: the memory named is `buffer`'s whole live mapping, which
        // the device may access until unmapped: the guard returned borrows
        // the buffer (it stays allocated), unmaps on drop, and if leaked or
        // if its unmap fails the pages' mapping count stays non-zero so they
        // are leaked (or kept by the container's orphan record); the API
        // hands out no reference into it, only atomic accesses.
        let mapped = unsafe {
            crate::dma::issue_map_dma(
                &self.inner.kernel,
                self.as_fd(),
                buffer.buffer.as_mut_ptr(),
                size,
                iova,
                access,
            )
        };
        if let Err(error) = mapped {
            buffer.buffer.release();
            return Err(error.into());
        }
        for w in windows.clone() {
            occ.windows.push((w, WindowHolder::Dma { iova }));
        }
        Ok(PamuMapping {
            fd: self.as_fd(),
            kernel: &self.inner.kernel,
            occupancy,
            orphans: &self.inner.orphans,
            buffer: &buffer.buffer,
            iova,
            size,
            windows,
        })
    }
}

/// DMA memory that is physically contiguous in chunks of a known size, for
/// PAMU windows (see the [module docs](self) for how that is guaranteed).
#[derive(Debug)]
pub struct ContiguousBuffer {
    buffer: DmaBuffer,
    contiguity: u64,
    simulated: bool,
}

impl ContiguousBuffer {
    /// `len` bytes rounded up to whole huge pages of `huge_page` bytes
    /// (`MAP_HUGETLB` with that size; the pages must be reserved, e.g. in
    /// `/sys/kernel/mm/hugepages/`). A huge page is physically contiguous
    /// and aligned to its size, so any window of at most `huge_page` bytes
    /// at a window-aligned offset lies in one.
    pub fn huge(len: usize, huge_page: u64) -> Result<ContiguousBuffer, Type2Error> {
        let page = crate::dma::page_size() as u64;
        if !huge_page.is_power_of_two() || huge_page < page || usize::try_from(huge_page).is_err() {
            return Err(Type2Error::HugePageSize { size: huge_page });
        }
        let buffer = DmaBuffer::huge_pages(len, huge_page)?;
        Ok(ContiguousBuffer {
            buffer,
            contiguity: huge_page,
            simulated: false,
        })
    }

    /// A simulator's stand-in (see
    /// [`Simulator::contiguous_buffer`](crate::sim::Simulator::contiguous_buffer)).
    #[cfg(feature = "sim")]
    pub(crate) fn simulated(len: usize, chunk: u64) -> Result<ContiguousBuffer, Type2Error> {
        let page = crate::dma::page_size() as u64;
        if !chunk.is_power_of_two() || chunk < page {
            return Err(Type2Error::HugePageSize { size: chunk });
        }
        let align = usize::try_from(chunk).map_err(|_| Type2Error::HugePageSize { size: chunk })?;
        let buffer = DmaBuffer::with_flags(len, align, nix::sys::mman::MapFlags::empty())?;
        Ok(ContiguousBuffer {
            buffer,
            contiguity: chunk,
            simulated: true,
        })
    }

    /// The buffer, for reads and writes (copies and volatile accesses).
    pub fn buffer(&self) -> &DmaBuffer {
        &self.buffer
    }

    /// The size of the physically contiguous, aligned chunks it is made of.
    pub fn contiguity(&self) -> u64 {
        self.contiguity
    }

    /// Length in bytes (whole chunks).
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A PAMU layout for a DMA plan: what [`plan`] picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type2Plan {
    /// The aperture.
    pub aperture: Aperture,
    /// The window count.
    pub windows: u32,
    /// The window size (aperture size / windows).
    pub window_size: u64,
    /// Per DMA request, in order: its IOVA and its size rounded up to whole
    /// windows (allocate the buffer that large).
    pub dma: Vec<(u64, u64)>,
    /// Per MSI bank, in order: the IOVA of the window reserved for it.
    pub msi_banks: Vec<u64>,
}

/// Why no plan fits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A DMA request of size 0.
    #[error("DMA request {index} has size 0")]
    EmptyRequest {
        /// Its position in the plan.
        index: usize,
    },
    /// More windows are needed than the PAMU has, whatever the window size.
    #[error("{needed} windows needed at least (one per request and bank), the maximum is {max}")]
    TooManyWindows {
        /// Requests + banks.
        needed: u64,
        /// The maximum.
        max: u32,
    },
    /// The aperture would not fit the 64-bit IOVA space above `base`.
    #[error("no aperture above {base:#x} fits the plan")]
    NoRoom {
        /// The lowest start asked for.
        base: u64,
    },
}

/// Picks the smallest aperture (at or above `base`, aligned) that holds
/// every DMA request as whole windows plus one window per MSI bank, with a
/// power-of-two window count of at most `max_windows` (and 256). Among
/// window sizes giving the same aperture, the smallest is taken (the least
/// rounding of the buffers). DMA requests take the first windows, in
/// order; the banks the windows right after them.
pub fn plan(
    bank_count: u32,
    dma_sizes: &[u64],
    base: u64,
    max_windows: u32,
) -> Result<Type2Plan, PlanError> {
    if let Some(index) = dma_sizes.iter().position(|&s| s == 0) {
        return Err(PlanError::EmptyRequest { index });
    }
    let max = max_windows.min(MAX_WINDOWS);
    let needed_min = (dma_sizes.len() as u64).saturating_add(u64::from(bank_count));
    if needed_min > u64::from(max) || max == 0 {
        return Err(PlanError::TooManyWindows {
            needed: needed_min,
            max,
        });
    }
    let mut best: Option<(u64, u64, u64)> = None; // (aperture, window size, windows)
    for shift in 12..64u32 {
        let ws = 1u64 << shift;
        // Windows needed at this size; a sum past `max` cannot fit anyway.
        let needed = dma_sizes.iter().try_fold(u64::from(bank_count), |acc, s| {
            acc.checked_add(s.div_ceil(ws))
        });
        let Some(n) = needed.and_then(|n| n.max(1).checked_next_power_of_two()) else {
            continue;
        };
        if n > u64::from(max) {
            continue;
        }
        let Some(size) = n.checked_mul(ws) else {
            break;
        };
        if best.is_none_or(|(b, _, _)| size < b) {
            best = Some((size, ws, n));
        }
    }
    let (size, ws, n) = best.ok_or(PlanError::NoRoom { base })?;
    let no_room = PlanError::NoRoom { base };
    let start = base
        .checked_next_multiple_of(size)
        .filter(|s| s.checked_add(size - 1).is_some())
        .ok_or(no_room.clone())?;
    let aperture = Aperture::new(start, size).map_err(|_| no_room.clone())?;
    // Every window lies inside the aperture, whose last byte is at most
    // 2^64 - 1: offsets from `start` are computed below the aperture size,
    // so nothing here can wrap even when the aperture ends at 2^64.
    let mut offset = 0u64;
    let mut dma = Vec::with_capacity(dma_sizes.len());
    for &s in dma_sizes {
        let rounded = s
            .div_ceil(ws)
            .checked_mul(ws)
            .filter(|r| offset.checked_add(*r).is_some_and(|end| end <= size))
            .ok_or(no_room.clone())?;
        dma.push((start + offset, rounded));
        offset += rounded;
    }
    let mut msi_banks = Vec::with_capacity(bank_count as usize);
    for _ in 0..bank_count {
        if offset.checked_add(ws).is_none_or(|end| end > size) {
            return Err(no_room);
        }
        msi_banks.push(start + offset);
        offset += ws;
    }
    Ok(Type2Plan {
        aperture,
        windows: n as u32,
        window_size: ws,
        dma,
        msi_banks,
    })
}
