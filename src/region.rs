//! Device regions: info and capabilities, bounds-checked `pread`/`pwrite`,
//! and owned `mmap`s with bounds- and alignment-checked volatile access.

use std::os::fd::BorrowedFd;

use crate::sys::{FromBytes, IntoBytes, SliceBytes};

use crate::abi::{self, SparseMmapCap};
use crate::caps;
use crate::device::Device;
use crate::error::{DeviceError, Errno};
use crate::kernel::{Arg, Kernel, req};
use crate::sys;

/// An mmap-able window of a region (from the sparse-mmap capability, or the
/// whole region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset within the region.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// What `VFIO_DEVICE_GET_REGION_INFO` reports for one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// The region index.
    pub index: u32,
    /// Raw `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: the region does not exist on this device).
    pub size: u64,
    /// Offset of the region within the device fd (for `pread`/`mmap`).
    pub offset: u64,
    /// The areas that may be mmapped, when the kernel restricts them
    /// (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`); `None` means the whole region.
    pub sparse: Option<Vec<SparseArea>>,
    /// Device-specific region type and subtype (`VFIO_REGION_INFO_CAP_TYPE`).
    pub region_type: Option<(u32, u32)>,
    /// The MSI-X table may be mmapped (`VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`).
    pub msix_mappable: bool,
}

impl RegionInfo {
    /// `read`/`pread` allowed.
    pub fn readable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_READ != 0
    }
    /// `write`/`pwrite` allowed.
    pub fn writable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_WRITE != 0
    }
    /// `mmap` allowed.
    pub fn mappable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0
    }

    /// Parses `VFIO_DEVICE_GET_REGION_INFO`'s bytes; untrusted.
    pub(crate) fn parse(buf: &[u8]) -> Result<RegionInfo, &'static str> {
        let (info, _) =
            sys::vfio_region_info::read_from_prefix(buf).map_err(|_| "region info truncated")?;
        let mut out = RegionInfo {
            index: info.index,
            flags: info.flags,
            size: info.size,
            offset: info.offset,
            sparse: None,
            region_type: None,
            msix_mappable: false,
        };
        if info.flags & sys::VFIO_REGION_INFO_FLAG_CAPS == 0 {
            return Ok(out);
        }
        let len = (info.argsz as usize).min(buf.len());
        for cap in caps::chain(
            &buf[..len],
            info.cap_offset,
            size_of::<sys::vfio_region_info>(),
        ) {
            let cap = cap?;
            match u32::from(cap.id) {
                sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                    let head: SparseMmapCap =
                        cap.read().ok_or("sparse mmap capability truncated")?;
                    let areas = abi::read_array::<sys::vfio_region_sparse_mmap_area>(
                        cap.tail::<SparseMmapCap>(),
                        head.nr_areas as usize,
                    )
                    .ok_or("sparse mmap capability: more areas than bytes")?;
                    let mut list = Vec::with_capacity(areas.len());
                    for a in areas {
                        let end = a.offset.checked_add(a.size).ok_or("sparse area wraps")?;
                        if end > info.size {
                            return Err("sparse area outside the region");
                        }
                        list.push(SparseArea {
                            offset: a.offset,
                            size: a.size,
                        });
                    }
                    out.sparse = Some(list);
                }
                sys::VFIO_REGION_INFO_CAP_TYPE => {
                    let t: sys::vfio_region_info_cap_type =
                        cap.read().ok_or("type capability truncated")?;
                    out.region_type = Some((t.type_, t.subtype));
                }
                sys::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => out.msix_mappable = true,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// `VFIO_DEVICE_GET_REGION_INFO`, asked again with room for the capability
/// chain when the first answer says it did not fit.
pub(crate) fn query(
    kernel: &Kernel,
    fd: BorrowedFd<'_>,
    index: u32,
) -> Result<RegionInfo, DeviceError> {
    let ioctl = req::VFIO_DEVICE_GET_REGION_INFO.name;
    let mut size = 256usize;
    for _ in 0..2 {
        let mut buf = vec![0u64; size.div_ceil(8)];
        let bytes = buf.as_mut_bytes();
        let mut head = sys::vfio_region_info::new_zeroed();
        head.argsz = bytes.len() as u32;
        head.index = index;
        bytes[..size_of::<sys::vfio_region_info>()].copy_from_slice(head.as_bytes());
        kernel
            .ioctl(fd, req::VFIO_DEVICE_GET_REGION_INFO, Arg::InOut(bytes))
            .map_err(|errno| DeviceError::IndexedIoctl {
                ioctl,
                index,
                errno,
            })?;
        let needed = u32::read_from_prefix(bytes)
            .map(|(v, _)| v as usize)
            .unwrap_or(0);
        if needed <= bytes.len() {
            return RegionInfo::parse(bytes).map_err(|what| DeviceError::Malformed { ioctl, what });
        }
        if needed > 1 << 20 {
            return Err(DeviceError::Malformed {
                ioctl,
                what: "argsz over 1 MiB",
            });
        }
        size = needed;
    }
    Err(DeviceError::Malformed {
        ioctl,
        what: "argsz grew between calls",
    })
}

/// One region of a device: its info, and access through `pread`/`pwrite`.
/// Borrows the device.
///
/// ```
/// use typed_vfio::{DeviceError, Type1v2, sim::Simulator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new();
/// let container = sim.open_container()?.attach(sim.open_group(1)?)?.set_iommu::<Type1v2>()?;
/// let device = container.open_device("0000:01:00.0")?;
/// let bar0 = device.region(0)?;
/// assert_eq!(bar0.info().size, 1 << 20);
/// assert_eq!(bar0.read_u32(0x00)?, 0x010000ed); // edu's ident register
/// bar0.write_u32(0x04, 0x0f0f_0f0f)?; // liveness: reads back inverted
/// assert_eq!(bar0.read_u32(0x04)?, 0xf0f0_f0f0);
/// // Bounds and alignment are checked before the kernel is asked.
/// assert!(matches!(bar0.read_u32(2), Err(DeviceError::OutOfBounds { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Region<'d> {
    device: &'d Device,
    info: RegionInfo,
}

/// `Region`'s scalar accessors in one byte order: `$order` names it in the
/// docs, `$from`/`$to` are the integer types' byte conversions for it, and
/// `$read_doc`/`$write_doc` end each accessor's first doc sentence.
macro_rules! scalar_access {
    ($order:literal, $from:ident, $to:ident, $read_doc:literal, $write_doc:literal;
     $($read:ident / $write:ident: $t:ty;)*) => {$(
        #[doc = concat!("Reads a ", $order, " `", stringify!($t), "` at `offset` (naturally aligned, inside the region)", $read_doc)]
        pub fn $read(&self, offset: u64) -> Result<$t, DeviceError> {
            let mut b = [0u8; size_of::<$t>()];
            self.check_aligned(offset, size_of::<$t>())?;
            self.read(offset, &mut b)?;
            Ok(<$t>::$from(b))
        }
        #[doc = concat!("Writes a ", $order, " `", stringify!($t), "` at `offset` (naturally aligned, inside the region)", $write_doc)]
        pub fn $write(&self, offset: u64, value: $t) -> Result<(), DeviceError> {
            self.check_aligned(offset, size_of::<$t>())?;
            self.write(offset, &value.$to())
        }
    )*};
}

/// The value an ioeventfd writes, and so its width
/// ([`Region::add_ioeventfd`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEventData {
    /// One byte (`VFIO_DEVICE_IOEVENTFD_8`).
    U8(u8),
    /// Two bytes (`VFIO_DEVICE_IOEVENTFD_16`).
    U16(u16),
    /// Four bytes (`VFIO_DEVICE_IOEVENTFD_32`).
    U32(u32),
    /// Eight bytes (`VFIO_DEVICE_IOEVENTFD_64`).
    U64(u64),
}

impl IoEventData {
    /// The size flag, the value as the kernel takes it, the width in bytes.
    ///
    /// vfio-pci writes `data` with its I/O accessors, which keep the host's
    /// byte order (`iowrite32` on little-endian kernels, `iowrite32be` on
    /// big-endian ones: vfio_pci_rdwr.c), so the bytes reaching the device
    /// are `data`'s in host order, as a `pwrite` of its native bytes would
    /// send. Converted here to little-endian, the device gets what
    /// [`Region::write_u32`] (and the other widths) would write, on every
    /// host.
    fn parts(self) -> (u32, u64, usize) {
        match self {
            IoEventData::U8(v) => (sys::VFIO_DEVICE_IOEVENTFD_8, v.into(), 1),
            IoEventData::U16(v) => (sys::VFIO_DEVICE_IOEVENTFD_16, v.to_le().into(), 2),
            IoEventData::U32(v) => (sys::VFIO_DEVICE_IOEVENTFD_32, v.to_le().into(), 4),
            IoEventData::U64(v) => (sys::VFIO_DEVICE_IOEVENTFD_64, v.to_le(), 8),
        }
    }
}

impl<'d> Region<'d> {
    pub(crate) fn new(device: &'d Device, info: RegionInfo) -> Self {
        Region { device, info }
    }

    /// The region's info.
    pub fn info(&self) -> &RegionInfo {
        &self.info
    }

    fn out_of_bounds(&self, offset: u64, len: u64) -> DeviceError {
        DeviceError::OutOfBounds {
            index: self.info.index,
            offset,
            len,
            size: self.info.size,
        }
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<u64, DeviceError> {
        let len64 = len as u64;
        match offset.checked_add(len64) {
            Some(end) if end <= self.info.size => self
                .info
                .offset
                .checked_add(offset)
                .ok_or_else(|| self.out_of_bounds(offset, len64)),
            _ => Err(self.out_of_bounds(offset, len64)),
        }
    }

    fn check_aligned(&self, offset: u64, width: usize) -> Result<(), DeviceError> {
        if !offset.is_multiple_of(width as u64) {
            return Err(self.out_of_bounds(offset, width as u64));
        }
        Ok(())
    }

    /// `VFIO_DEVICE_IOEVENTFD`: from now on, each signal of the eventfd `fd`
    /// makes the kernel write `data` at `offset` of this region (a BAR),
    /// little-endian as [`write_u32`](Self::write_u32) and the other
    /// accessors write on every host (for a big-endian register, pass the
    /// value byte-swapped), without a round trip
    /// through user space; signals before the write coalesce into one. The
    /// kernel keeps its own reference to the eventfd until
    /// [`remove_ioeventfd`](Self::remove_ioeventfd) or the device closes.
    /// A second one with the same offset, width and data is `EEXIST`.
    #[doc(alias = "VFIO_DEVICE_IOEVENTFD")]
    pub fn add_ioeventfd(
        &self,
        offset: u64,
        data: IoEventData,
        fd: BorrowedFd<'_>,
    ) -> Result<(), DeviceError> {
        use std::os::fd::AsRawFd;
        self.ioeventfd(offset, data, fd.as_raw_fd())
    }

    /// Removes the ioeventfd [`add_ioeventfd`](Self::add_ioeventfd) set with
    /// this offset, width and data (`ENODEV` if there is none).
    pub fn remove_ioeventfd(&self, offset: u64, data: IoEventData) -> Result<(), DeviceError> {
        self.ioeventfd(offset, data, -1)
    }

    fn ioeventfd(&self, offset: u64, data: IoEventData, fd: i32) -> Result<(), DeviceError> {
        let (flags, value, width) = data.parts();
        let at = self.check_range(offset, width)?;
        let mut arg = abi::IoEventFd {
            argsz: size_of::<abi::IoEventFd>() as u32,
            flags,
            offset: at,
            data: value,
            fd,
            reserved: 0,
        };
        self.device
            .kernel()
            .ioctl(
                self.device.as_fd(),
                req::VFIO_DEVICE_IOEVENTFD,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map(drop)
            .map_err(|errno| match errno {
                // A device without ioeventfds (an mdev: vfio-pci's own).
                Errno::ENOTTY => DeviceError::NotSupported {
                    ioctl: req::VFIO_DEVICE_IOEVENTFD.name,
                },
                errno => DeviceError::IndexedIoctl {
                    ioctl: req::VFIO_DEVICE_IOEVENTFD.name,
                    index: self.info.index,
                    errno,
                },
            })
    }

    /// Reads `buf.len()` bytes at `offset` with `pread` on the device fd.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let (kernel, fd) = (self.device.kernel(), self.device.as_fd());
        let len = buf.len();
        self.transfer(offset, len, self.info.readable(), ("read", "pread"), |at| {
            kernel.pread(fd, buf, at)
        })
    }

    /// Writes `buf` at `offset` with `pwrite` on the device fd.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let (kernel, fd) = (self.device.kernel(), self.device.as_fd());
        self.transfer(
            offset,
            buf.len(),
            self.info.writable(),
            ("write", "pwrite"),
            |at| kernel.pwrite(fd, buf, at),
        )
    }

    /// One `pread`/`pwrite` of `len` bytes at region `offset`: checks the
    /// region allows it (`what`) and that it lies inside the region, then
    /// runs `op` at the fd offset; a short transfer is `EIO`.
    fn transfer(
        &self,
        offset: u64,
        len: usize,
        allowed: bool,
        (what, syscall): (&'static str, &'static str),
        op: impl FnOnce(u64) -> Result<usize, Errno>,
    ) -> Result<(), DeviceError> {
        let index = self.info.index;
        if !allowed {
            return Err(DeviceError::NotPermitted { index, what });
        }
        let at = self.check_range(offset, len)?;
        let io = |errno| DeviceError::Io {
            syscall,
            index,
            offset,
            errno,
        };
        if op(at).map_err(io)? != len {
            return Err(io(Errno::EIO));
        }
        Ok(())
    }

    scalar_access! {
        "little-endian", from_le_bytes, to_le_bytes,
        ": PCI config space and BARs are little-endian whatever the host's byte order.",
        ".";
        read_u8 / write_u8: u8;
        read_u16 / write_u16: u16;
        read_u32 / write_u32: u32;
        read_u64 / write_u64: u64;
    }

    scalar_access! {
        "big-endian", from_be_bytes, to_be_bytes,
        ", for devices whose registers are big-endian (many QorIQ on-chip devices; QEMU's `edu` on a big-endian guest). Bounds and errors as for the little-endian accessor.\n\nOne `pread` on the device fd. vfio-pci hands the bytes over in the device's own order on every host, so this is right wherever the device is big-endian, whatever the host's byte order.",
        ": one `pwrite` on the device fd.";
        read_u16_be / write_u16_be: u16;
        read_u32_be / write_u32_be: u32;
        read_u64_be / write_u64_be: u64;
    }

    /// Maps the region's mmap-able areas (all of them: the sparse areas when
    /// the kernel lists some, else the whole region). Fails with
    /// [`DeviceError::NotPermitted`] when the region is not mmap-able.
    pub fn mmap(&self) -> Result<MappedRegion<'d>, DeviceError> {
        let index = self.info.index;
        if !self.info.mappable() || self.info.size == 0 {
            return Err(DeviceError::NotPermitted {
                index,
                what: "mmap",
            });
        }
        let whole = [SparseArea {
            offset: 0,
            size: self.info.size,
        }];
        let areas = self.info.sparse.as_deref().unwrap_or(&whole);
        let mut mapped = MappedRegion {
            index,
            size: self.info.size,
            readable: self.info.readable(),
            writable: self.info.writable(),
            areas: Vec::with_capacity(areas.len()),
            _device: std::marker::PhantomData,
        };
        for area in areas.iter().filter(|a| a.size > 0) {
            // Both offsets are the kernel's: their sum is checked (a wrap
            // would map another region, BAR0 at file offset 0).
            let at = self
                .info
                .offset
                .checked_add(area.offset)
                .ok_or(DeviceError::Malformed {
                    ioctl: req::VFIO_DEVICE_GET_REGION_INFO.name,
                    what: "region offset + sparse area offset overflows",
                })?;
            let ptr = crate::mmio::map(
                self.device.as_fd(),
                at,
                area.size,
                self.info.readable(),
                self.info.writable(),
            )
            .map_err(|errno| DeviceError::Mmap {
                index,
                offset: area.offset,
                len: area.size,
                errno,
            })?;
            mapped.areas.push(crate::mmio::Area {
                offset: area.offset,
                size: area.size,
                ptr,
            });
        }
        Ok(mapped)
    }
}

/// An owned `mmap` of a region's mmap-able areas, unmapped on drop. Access is
/// volatile, bounds-checked against the mapped areas and naturally aligned.
/// Borrows the device it came from.
///
/// Byte order: the plain accessors are little-endian (PCI's order, swapped
/// on a big-endian host); the `_be` ones are for devices whose registers
/// are big-endian. Width: on a 32-bit CPU (PowerPC e500, armv7, i686) a
/// `u64` access is two 32-bit accesses in an order the compiler picks, so a
/// device register that must see one 64-bit access cannot be driven that
/// way there; `Region`'s 8-byte `pread`/`pwrite` is split in two 4-byte
/// accesses by vfio-pci too where the kernel has no `ioread64` (32-bit
/// PowerPC).
#[derive(Debug)]
pub struct MappedRegion<'d> {
    index: u32,
    size: u64,
    readable: bool,
    writable: bool,
    areas: Vec<crate::mmio::Area>,
    _device: std::marker::PhantomData<&'d Device>,
}

/// `MappedRegion`'s volatile accessors in one byte order: `$order` names it
/// in the docs, `$from`/`$to` are the integer types' conversions from and to
/// it, and `$doc` ends each accessor's doc sentence.
macro_rules! mmio_access {
    ($order:literal, $from:ident, $to:ident, $doc:literal;
     $($read:ident / $write:ident: $t:ty;)*) => {$(
        #[doc = concat!("Volatile read of a ", $order, " `", stringify!($t), "` at `offset` within the region", $doc)]
        pub fn $read(&self, offset: u64) -> Result<$t, DeviceError> {
            self.permit(self.readable, "read")?;
            let ptr = self.locate(offset, size_of::<$t>())?;
            Ok(<$t>::$from(crate::mmio::read::<$t>(ptr)))
        }
        #[doc = concat!("Volatile write of a ", $order, " `", stringify!($t), "` at `offset` within the region", $doc)]
        pub fn $write(&self, offset: u64, value: $t) -> Result<(), DeviceError> {
            self.permit(self.writable, "write")?;
            let ptr = self.locate(offset, size_of::<$t>())?;
            crate::mmio::write::<$t>(ptr, value.$to());
            Ok(())
        }
    )*};
}

/// One 32-bit little-endian register of a [`MappedRegion`], located and
/// checked once ([`MappedRegion::register32`]): a doorbell a driver rings
/// in its hot path, where [`MappedRegion::write_u32`] would look the offset
/// up among the mapped areas and check it on every write. A write is the
/// architecture's I/O barrier and one volatile store (`benches/icount
/// --doorbell` counts it against a raw store).
#[derive(Clone, Copy, Debug)]
pub struct Register32<'r> {
    slot: crate::mmio::Slot<'r>,
}

impl Register32<'_> {
    /// Writes the register (little-endian: PCI's byte order), after the
    /// program's earlier writes to DMA memory.
    #[inline]
    pub fn write(&self, value: u32) {
        crate::mmio::write::<u32>(self.slot, value.to_le());
    }

    /// Reads the register (little-endian), before the program's later
    /// reads of DMA memory.
    #[inline]
    pub fn read(&self) -> u32 {
        u32::from_le(crate::mmio::read::<u32>(self.slot))
    }
}

impl MappedRegion<'_> {
    /// The mapped areas, as offsets within the region.
    pub fn areas(&self) -> impl Iterator<Item = SparseArea> + '_ {
        self.areas.iter().map(|a| SparseArea {
            offset: a.offset,
            size: a.size,
        })
    }

    fn permit(&self, allowed: bool, what: &'static str) -> Result<(), DeviceError> {
        if allowed {
            Ok(())
        } else {
            Err(DeviceError::NotPermitted {
                index: self.index,
                what,
            })
        }
    }

    fn locate(&self, offset: u64, width: usize) -> Result<crate::mmio::Slot<'_>, DeviceError> {
        let err = || DeviceError::OutOfBounds {
            index: self.index,
            offset,
            len: width as u64,
            size: self.size,
        };
        if !offset.is_multiple_of(width as u64) {
            return Err(err());
        }
        self.areas
            .iter()
            .find_map(|a| a.slot(offset, width))
            .ok_or_else(err)
    }

    /// The 32-bit register at `offset` (4-aligned, inside a mapped area),
    /// for repeated reads and writes without the per-access checks. The
    /// region must be readable and writable ([`DeviceError::NotPermitted`]).
    pub fn register32(&self, offset: u64) -> Result<Register32<'_>, DeviceError> {
        self.permit(self.readable, "read")?;
        self.permit(self.writable, "write")?;
        Ok(Register32 {
            slot: self.locate(offset, 4)?,
        })
    }

    mmio_access! {
        "little-endian", from_le, to_le,
        " (PCI byte order, swapped on a big-endian host).";
        read_u8 / write_u8: u8;
        read_u16 / write_u16: u16;
        read_u32 / write_u32: u32;
        read_u64 / write_u64: u64;
    }

    mmio_access! {
        "big-endian", from_be, to_be,
        ", for devices whose registers are big-endian (many QorIQ on-chip devices; QEMU's `edu` on a big-endian guest): one access of the full width, swapped on a little-endian host.";
        read_u16_be / write_u16_be: u16;
        read_u32_be / write_u32_be: u32;
        read_u64_be / write_u64_be: u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_bytes(size: u64, areas: &[(u64, u64)], claimed: u32) -> Vec<u8> {
        let cap = 32u32;
        let type_cap = cap + 16 + 16 * areas.len() as u32;
        let total = type_cap + 16;
        let mut b = Vec::new();
        let flags = sys::VFIO_REGION_INFO_FLAG_READ
            | sys::VFIO_REGION_INFO_FLAG_WRITE
            | sys::VFIO_REGION_INFO_FLAG_MMAP
            | sys::VFIO_REGION_INFO_FLAG_CAPS;
        for w in [total, flags, 2, cap] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend_from_slice(&size.to_ne_bytes());
        b.extend_from_slice(&0x2_0000_0000u64.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes()); // sparse mmap
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&type_cap.to_ne_bytes());
        b.extend_from_slice(&claimed.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for &(o, s) in areas {
            b.extend_from_slice(&o.to_ne_bytes());
            b.extend_from_slice(&s.to_ne_bytes());
        }
        b.extend_from_slice(&2u16.to_ne_bytes()); // type
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0x8086u32.to_ne_bytes());
        b.extend_from_slice(&3u32.to_ne_bytes());
        b
    }

    #[test]
    fn parses_sparse_areas_and_type() {
        let info =
            RegionInfo::parse(&region_bytes(0x4000, &[(0, 0x1000), (0x3000, 0x1000)], 2)).unwrap();
        assert_eq!(info.index, 2);
        assert_eq!(info.offset, 0x2_0000_0000);
        assert!(info.readable() && info.writable() && info.mappable());
        assert_eq!(
            info.sparse,
            Some(vec![
                SparseArea {
                    offset: 0,
                    size: 0x1000
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000
                }
            ])
        );
        assert_eq!(info.region_type, Some((0x8086, 3)));
        assert!(!info.msix_mappable);
    }

    /// Issue 11, item 5: the region offset and a sparse area's offset are
    /// both the kernel's; their sum used to overflow (a debug panic, or in
    /// release a wrapped offset that mmapped BAR0).
    #[test]
    #[cfg(feature = "sim")]
    fn mmap_refuses_an_offset_sum_that_overflows() {
        let sim = crate::sim::Simulator::new();
        let c = sim
            .open_container()
            .unwrap()
            .attach(sim.open_group(1).unwrap())
            .unwrap()
            .set_iommu::<crate::Type1v2>()
            .unwrap();
        let device = c.open_device("0000:01:00.0").unwrap();
        let info = RegionInfo {
            index: 0,
            flags: sys::VFIO_REGION_INFO_FLAG_READ
                | sys::VFIO_REGION_INFO_FLAG_WRITE
                | sys::VFIO_REGION_INFO_FLAG_MMAP,
            size: 0x2000,
            offset: u64::MAX - 0xfff,
            sparse: Some(vec![SparseArea {
                offset: 0x1000,
                size: 0x1000,
            }]),
            region_type: None,
            msix_mappable: false,
        };
        let region = Region::new(&device, info);
        match region.mmap() {
            Err(e) => assert_eq!(
                e,
                DeviceError::Malformed {
                    ioctl: "VFIO_DEVICE_GET_REGION_INFO",
                    what: "region offset + sparse area offset overflows",
                }
            ),
            Ok(m) => panic!("mapped a wrapped offset: {m:?}"),
        }
    }

    #[test]
    fn rejects_areas_outside_the_region_or_beyond_the_bytes() {
        assert!(RegionInfo::parse(&region_bytes(0x2000, &[(0x1000, 0x2000)], 1)).is_err());
        assert!(RegionInfo::parse(&region_bytes(0x2000, &[(u64::MAX, 2)], 1)).is_err());
        assert!(RegionInfo::parse(&region_bytes(0x2000, &[(0, 0x1000)], 9)).is_err());
        let bytes = region_bytes(0x4000, &[(0, 0x1000)], 1);
        for cut in 0..bytes.len() {
            let _ = RegionInfo::parse(&bytes[..cut]);
        }
    }

    #[cfg(feature = "sim")]
    fn sim_bar0_test<R>(f: impl FnOnce(&Region<'_>) -> R) -> R {
        let sim = crate::sim::Simulator::new();
        let c = sim
            .open_container()
            .unwrap()
            .attach(sim.open_group(1).unwrap())
            .unwrap()
            .set_iommu::<crate::Type1v2>()
            .unwrap();
        let device = c.open_device("0000:01:00.0").unwrap();
        let bar0 = device.region(0).unwrap();
        f(&bar0)
    }

    #[test]
    #[cfg(feature = "sim")]
    fn big_endian_accessors_swap_what_the_little_endian_ones_see() {
        // The simulated edu is a little-endian PCI device: its big-endian
        // view is the byte-swapped value, and a big-endian write lands
        // swapped in the register.
        sim_bar0_test(|bar0| {
            assert_eq!(bar0.read_u32(0).unwrap(), 0x010000ed);
            assert_eq!(bar0.read_u32_be(0).unwrap(), 0xed00_0001);
            bar0.write_u32_be(4, 0x0102_0304).unwrap();
            assert_eq!(bar0.read_u32(4).unwrap(), !0x0403_0201);
            // edu's liveness register inverts: the inverse, in either order
            assert_eq!(bar0.read_u32_be(4).unwrap(), !0x0102_0304);
            // a plain register: the value as written, in either order
            bar0.write_u32_be(0x80, 0x0123_4567).unwrap();
            assert_eq!(bar0.read_u32(0x80).unwrap(), 0x6745_2301);
            assert_eq!(bar0.read_u32_be(0x80).unwrap(), 0x0123_4567);
            // edu answers 2-byte reads with 0 (QEMU's memory core)
            assert_eq!(bar0.read_u16_be(0).unwrap(), 0);
        });
    }

    #[test]
    #[cfg(feature = "sim")]
    fn big_endian_accessors_check_bounds_and_alignment_first() {
        sim_bar0_test(|bar0| {
            for e in [
                bar0.read_u32_be(2).unwrap_err(),
                bar0.read_u16_be(1).unwrap_err(),
                bar0.write_u64_be(4, 0).unwrap_err(),
                bar0.read_u32_be(1 << 20).unwrap_err(),
                bar0.write_u16_be((1 << 20) - 1, 0).unwrap_err(),
            ] {
                assert!(
                    matches!(e, DeviceError::OutOfBounds { index: 0, .. }),
                    "{e:?}"
                );
            }
        });
    }

    /// A MappedRegion over a page of an ordinary file (the simulator has no
    /// BAR mmap): the accessors' byte order shows in the file's bytes.
    #[test]
    #[cfg_attr(miri, ignore = "mmap")]
    fn mapped_big_endian_accessors_store_and_load_big_endian_bytes() {
        use std::io::Read;
        use std::os::fd::AsFd;
        let path =
            std::env::temp_dir().join(format!("typed-vfio-region-be-{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(4096).unwrap();
        let ptr = crate::mmio::map(file.as_fd(), 0, 4096, true, true).unwrap();
        let mapped = MappedRegion {
            index: 0,
            size: 4096,
            readable: true,
            writable: true,
            areas: vec![crate::mmio::Area {
                offset: 0,
                size: 4096,
                ptr,
            }],
            _device: std::marker::PhantomData,
        };
        mapped.write_u16_be(0, 0x0102).unwrap();
        mapped.write_u32_be(4, 0x0304_0506).unwrap();
        mapped.write_u64_be(8, 0x0708_090a_0b0c_0d0e).unwrap();
        mapped.write_u32(16, 0x1112_1314).unwrap();
        assert_eq!(mapped.read_u16_be(0).unwrap(), 0x0102);
        assert_eq!(mapped.read_u16(0).unwrap(), 0x0201);
        assert_eq!(mapped.read_u32_be(4).unwrap(), 0x0304_0506);
        assert_eq!(mapped.read_u64_be(8).unwrap(), 0x0708_090a_0b0c_0d0e);
        assert_eq!(mapped.read_u64(8).unwrap(), 0x0e0d_0c0b_0a09_0807);
        assert_eq!(mapped.read_u32_be(16).unwrap(), 0x1413_1211);
        assert!(matches!(
            mapped.read_u32_be(2),
            Err(DeviceError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mapped.write_u64_be(4096, 0),
            Err(DeviceError::OutOfBounds { .. })
        ));
        drop(mapped);
        let mut bytes = [0u8; 20];
        file.read_exact(&mut bytes).unwrap();
        assert_eq!(
            bytes,
            [
                1, 2, 0, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x14, 0x13, 0x12, 0x11
            ]
        );
    }
}
