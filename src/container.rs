//! The container (`/dev/vfio/vfio`) and its IOMMU-model typestate.
//!
//! ```text
//!   Container::open()          attach(group)            set_iommu::<M>()
//!  ───────────────▶ Container<Unset> ───────▶ Container<Attached> ───────▶ Container<M>
//!                        ▲                      │  attach(more)            │ attach(more)
//!                        │                      ▼                          │ map(&buf) → DmaMapping<'_>
//!                        └──────────── release_groups() ◀──────────────────┘
//! ```
//!
//! `M` is [`Type1`], [`Type1v2`] or [`NoIommu`]. DMA exists only on models
//! that implement [`DmaModel`]. Releasing the groups is the only way back to
//! `Unset` and needs the container by value, so it cannot happen while a
//! [`DmaMapping`](crate::DmaMapping) borrows it: the kernel's silent drop of
//! every mapping when the last group leaves cannot pull memory out from under
//! a live mapping guard.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use crate::dma::Orphans;

use crate::sys::{FromBytes, IntoBytes, SliceBytes};

use crate::abi::IovaRangeCap;
use crate::caps;
use crate::device::Device;
use crate::error::{ContainerError, GroupError};
use crate::group::{Group, GroupId};
use crate::kernel::{Arg, Kernel, req};
use crate::sys;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A container state (type state). Sealed: the states are this crate's.
pub trait ContainerState: sealed::Sealed {}

/// No IOMMU model and no group (type state).
#[derive(Debug)]
pub struct Unset;
/// One or more viable groups attached, no IOMMU model yet (type state).
#[derive(Debug)]
pub struct Attached;

/// An IOMMU model a container can be set to: carries the kernel's id.
pub trait IommuModel: ContainerState {
    /// The id passed to `VFIO_CHECK_EXTENSION` and `VFIO_SET_IOMMU`.
    const ID: u32;
    /// The kernel's name for it.
    const NAME: &'static str;
}

/// An IOMMU model with type1 DMA mapping (`MAP_DMA`/`UNMAP_DMA`, `GET_INFO`).
pub trait DmaModel: IommuModel {}

/// The type1 IOMMU model (type state).
#[derive(Debug)]
pub struct Type1;
/// The type1v2 IOMMU model (type state): type1 with stricter unmap semantics
/// (no splitting of a mapping) and MSI reserved regions.
#[derive(Debug)]
pub struct Type1v2;
/// No IOMMU (type state): `vfio.enable_unsafe_noiommu_mode=1`, no DMA
/// mapping; DMA goes to physical addresses. Needs `CAP_SYS_RAWIO`.
#[derive(Debug)]
pub struct NoIommu;

impl sealed::Sealed for Unset {}
impl sealed::Sealed for Attached {}
impl sealed::Sealed for Type1 {}
impl sealed::Sealed for Type1v2 {}
impl sealed::Sealed for NoIommu {}
impl ContainerState for Unset {}
impl ContainerState for Attached {}
impl ContainerState for Type1 {}
impl ContainerState for Type1v2 {}
impl ContainerState for NoIommu {}
impl IommuModel for Type1 {
    const ID: u32 = sys::VFIO_TYPE1_IOMMU;
    const NAME: &'static str = "VFIO_TYPE1_IOMMU";
}
impl IommuModel for Type1v2 {
    const ID: u32 = sys::VFIO_TYPE1v2_IOMMU;
    const NAME: &'static str = "VFIO_TYPE1v2_IOMMU";
}
impl IommuModel for NoIommu {
    const ID: u32 = sys::VFIO_NOIOMMU_IOMMU;
    const NAME: &'static str = "VFIO_NOIOMMU_IOMMU";
}
impl DmaModel for Type1 {}
impl DmaModel for Type1v2 {}

/// States in which the container holds at least one group.
pub trait HasGroups: ContainerState {}
impl HasGroups for Attached {}
impl<M: IommuModel> HasGroups for M {}

/// A VFIO container: an IOMMU context that groups join.
///
/// Dropping it detaches its groups (`VFIO_GROUP_UNSET_CONTAINER`) and then
/// closes the groups and the container, in that order. Close device fds first
/// for a clean teardown: the kernel refuses to detach a group with open
/// devices (`EBUSY`) and then keeps it attached until they close.
///
/// On a machine with VFIO, [`Container::open`] opens `/dev/vfio/vfio`; the
/// example runs on the [simulated kernel](crate::sim) and is otherwise the
/// same code:
///
/// ```
/// use typed_vfio::{Type1v2, sim::Simulator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new();
/// let container = sim.open_container()?; // Container::open() on a host
/// assert!(container.supports::<Type1v2>()?);
/// let container = container
///     .attach(sim.open_group(1)?)? // Group::open(1) on a host
///     .set_iommu::<Type1v2>()?;
/// assert_eq!(container.iommu_info()?.min_page_size(), 4096);
/// let device = container.open_device("0000:01:00.0")?;
/// drop(device);
/// let (_unset, groups) = container.release_groups().map_err(|e| e.error)?;
/// assert_eq!(groups.len(), 1);
/// # Ok(())
/// # }
/// ```
pub struct Container<S: ContainerState = Unset> {
    pub(crate) inner: Inner,
    _state: PhantomData<S>,
}

/// The container's resources; its `Drop` detaches the groups. Kept apart from
/// the state marker so a transition moves it without running that `Drop`.
#[derive(Debug)]
pub(crate) struct Inner {
    // Field order is drop order: groups close before the container fd.
    pub(crate) groups: GroupList,
    pub(crate) fd: OwnedFd,
    pub(crate) kernel: Kernel,
    /// Mappings whose guard failed to unmap: their pages are kept until the
    /// kernel confirms them gone.
    pub(crate) orphans: Orphans,
    /// The PAMU ("type2") configuration and window bookkeeping; unused by
    /// the other models. Reset when the groups are released.
    #[cfg(feature = "type2")]
    pub(crate) type2: crate::type2::Type2State,
}

impl Inner {
    fn detach_all(&mut self) {
        let mut all_left = true;
        for group in self.groups.iter() {
            // Errors are ignored: Drop must not fail. EBUSY (open devices)
            // leaves the kernel to detach when the last device fd closes.
            all_left &= self
                .kernel
                .ioctl(group.as_fd(), req::VFIO_GROUP_UNSET_CONTAINER, Arg::None)
                .is_ok();
        }
        // The last group left: orphaned pages may go once no mapping can
        // remain (see `last_group_left`). Otherwise the kernel may still map
        // them: they stay leaked.
        if all_left {
            self.last_group_left();
        }
    }

    /// Every group has left the container: releases the pages of the
    /// mappings whose unmap failed (the orphans), once no mapping can
    /// remain.
    ///
    /// VFIO's container drops its IOMMU driver, and with it every mapping,
    /// when the last group leaves. iommufd's VFIO compatibility container
    /// (`CONFIG_IOMMUFD_VFIO_CONTAINER`, which then provides
    /// `/dev/vfio/vfio`) does not: its IOAS and the mappings in it belong to
    /// the container fd, and a device that attaches to it later pins the
    /// user memory behind those mappings afresh, whatever the process has
    /// mapped at those addresses by then. So, with orphans pending, every
    /// mapping is unmapped first (`VFIO_IOMMU_UNMAP_DMA` with
    /// `VFIO_DMA_UNMAP_FLAG_ALL`): VFIO's container, without a driver,
    /// refuses it with `EINVAL` (nothing is mapped any more), iommufd's
    /// performs it. Any other answer leaves the pages leaked. Without
    /// orphans nothing is issued.
    fn last_group_left(&self) {
        if self.orphans.count() == 0 {
            return;
        }
        let mut arg = crate::dma::unmap_dma_arg(0, 0, sys::VFIO_DMA_UNMAP_FLAG_ALL);
        let answer = self.kernel.ioctl(
            self.fd.as_fd(),
            req::VFIO_IOMMU_UNMAP_DMA,
            Arg::InOut(arg.as_mut_bytes()),
        );
        if matches!(answer, Ok(_) | Err(crate::Errno::EINVAL)) {
            self.orphans.all_gone();
        }
    }
}

/// The groups of a container: append-only while shared (so a group can be
/// attached through `&Container` while mapping guards borrow it), emptied
/// only through `&mut`.
#[derive(Debug, Default)]
pub(crate) struct GroupList {
    head: OnceLock<Box<GroupNode>>,
}

/// The groups attached to a container, in attach order
/// ([`Container::groups`]).
#[derive(Clone, Debug)]
pub struct Groups<'a> {
    next: Option<&'a GroupNode>,
}

impl<'a> Iterator for Groups<'a> {
    type Item = &'a Group;

    fn next(&mut self) -> Option<&'a Group> {
        let node = self.next?;
        self.next = node.next.get().map(|b| &**b);
        Some(&node.group)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = std::iter::successors(self.next, |n| n.next.get().map(|b| &**b)).count();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Groups<'_> {}

impl Groups<'_> {
    /// Whether no group is left.
    pub fn is_empty(&self) -> bool {
        self.next.is_none()
    }
}

#[derive(Debug)]
struct GroupNode {
    group: Group,
    next: OnceLock<Box<GroupNode>>,
}

impl GroupList {
    /// Appends `group` (lock-free: a lost race moves on to the next slot).
    fn push(&self, group: Group) {
        let mut slot = &self.head;
        let mut node = Box::new(GroupNode {
            group,
            next: OnceLock::new(),
        });
        loop {
            match slot.set(node) {
                Ok(()) => return,
                Err(back) => node = back,
            }
            if let Some(taken) = slot.get() {
                slot = &taken.next;
            }
        }
    }

    /// The groups, in the order they were attached.
    pub(crate) fn iter(&self) -> Groups<'_> {
        Groups {
            next: self.head.get().map(|b| &**b),
        }
    }

    /// Takes every group out, in order.
    fn take_all(&mut self) -> Vec<Group> {
        let mut out = Vec::new();
        let mut next = self.head.take();
        while let Some(node) = next {
            let GroupNode {
                group,
                next: mut rest,
            } = *node;
            out.push(group);
            next = rest.take();
        }
        out
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.detach_all();
    }
}

impl<S: ContainerState> fmt::Debug for Container<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("state", &core::any::type_name::<S>())
            .field("fd", &self.inner.fd)
            .field(
                "groups",
                &self.inner.groups.iter().map(Group::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The path of the container node.
pub const CONTAINER_PATH: &str = "/dev/vfio/vfio";

impl Container<Unset> {
    /// Opens `/dev/vfio/vfio` and checks the API version
    /// (`VFIO_GET_API_VERSION`).
    #[doc(alias = "VFIO_GET_API_VERSION")]
    pub fn open() -> Result<Self, ContainerError> {
        Self::open_in(Kernel::host())
    }

    /// Opens the container node of `kernel`.
    pub(crate) fn open_in(kernel: Kernel) -> Result<Self, ContainerError> {
        let path = Path::new(CONTAINER_PATH);
        let fd = kernel.open(path).map_err(|errno| ContainerError::Open {
            path: path.into(),
            errno,
        })?;
        Self::from_fd_in(kernel, fd)
    }

    /// Adopts an already-open container fd (privilege separation: a launcher
    /// opens `/dev/vfio/vfio` and hands the fd over). The API version is
    /// checked. The fd should be a fresh container: the kernel offers no way
    /// to ask which groups a container holds, so that is not checked, and
    /// the typestate describes only what is done through this value.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ContainerError> {
        Self::from_fd_in(Kernel::for_fd(fd.as_fd()), fd)
    }

    pub(crate) fn from_fd_in(kernel: Kernel, fd: OwnedFd) -> Result<Self, ContainerError> {
        let version = kernel
            .ioctl(fd.as_fd(), req::VFIO_GET_API_VERSION, Arg::None)
            .map_err(|errno| ContainerError::Ioctl {
                ioctl: req::VFIO_GET_API_VERSION.name,
                errno,
            })?;
        if version != sys::VFIO_API_VERSION as i32 {
            return Err(ContainerError::ApiVersion {
                found: version,
                expected: sys::VFIO_API_VERSION as i32,
            });
        }
        Ok(Container {
            inner: Inner {
                groups: GroupList::default(),
                fd,
                kernel,
                orphans: Orphans::default(),
                #[cfg(feature = "type2")]
                type2: Default::default(),
            },
            _state: PhantomData,
        })
    }

    /// Attaches a first group (`VFIO_GROUP_SET_CONTAINER`). The group must
    /// be viable and unattached; this is checked with
    /// `VFIO_GROUP_GET_STATUS` before the attach, so a failure names the
    /// reason. On failure both the container and the group come back.
    #[doc(alias = "VFIO_GROUP_SET_CONTAINER")]
    pub fn attach(self, group: Group) -> Result<Container<Attached>, AttachError<Unset>> {
        match self.attach_group(group) {
            Ok(()) => Ok(self.into_state()),
            Err((group, error)) => Err(AttachError {
                container: self,
                group,
                error,
            }),
        }
    }
}

impl<S: ContainerState> Container<S> {
    /// Whether the kernel supports an extension or IOMMU model id
    /// (`VFIO_CHECK_EXTENSION`).
    #[doc(alias = "VFIO_CHECK_EXTENSION")]
    pub fn check_extension(&self, id: u32) -> Result<bool, ContainerError> {
        let ioctl = req::VFIO_CHECK_EXTENSION.name;
        let id = i32::try_from(id).map_err(|_| ContainerError::Ioctl {
            ioctl,
            errno: crate::Errno::EINVAL,
        })?;
        self.inner
            .kernel
            .ioctl(
                self.inner.fd.as_fd(),
                req::VFIO_CHECK_EXTENSION,
                Arg::Int(id),
            )
            .map(|r| r > 0)
            .map_err(|errno| ContainerError::Ioctl { ioctl, errno })
    }

    /// Whether the kernel offers IOMMU model `M`.
    pub fn supports<M: IommuModel>(&self) -> Result<bool, ContainerError> {
        self.check_extension(M::ID)
    }

    /// The groups attached, in attach order.
    pub fn groups(&self) -> Groups<'_> {
        self.inner.groups.iter()
    }

    /// The attached group with this id.
    pub fn group(&self, id: GroupId) -> Result<&Group, ContainerError> {
        self.inner
            .groups
            .iter()
            .find(|g| g.id() == id)
            .ok_or(ContainerError::NoSuchGroup(id))
    }

    /// The container fd, borrowed.
    #[inline]
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    pub(crate) fn into_state<T: ContainerState>(self) -> Container<T> {
        Container {
            inner: self.inner,
            _state: PhantomData,
        }
    }

    fn attach_group(&self, group: Group) -> Result<(), (Group, GroupError)> {
        let id = group.id();
        let status = match group.status() {
            Ok(s) => s,
            Err(e) => return Err((group, e)),
        };
        if !status.viable {
            return Err((group, GroupError::NotViable { group: id }));
        }
        if status.container_set {
            return Err((group, GroupError::AlreadyAttached { group: id }));
        }
        let raw = self.inner.fd.as_raw_fd();
        let attached = self.inner.kernel.ioctl(
            group.as_fd(),
            req::VFIO_GROUP_SET_CONTAINER,
            Arg::In(&raw.to_ne_bytes()),
        );
        if let Err(errno) = attached {
            let ioctl = req::VFIO_GROUP_SET_CONTAINER.name;
            return Err((
                group,
                GroupError::Ioctl {
                    ioctl,
                    group: id,
                    errno,
                },
            ));
        }
        self.inner.groups.push(group);
        Ok(())
    }
}

impl<S: HasGroups> Container<S> {
    /// Attaches one more group (`VFIO_GROUP_SET_CONTAINER`); with an IOMMU
    /// model set, the kernel checks the group is compatible with it. On
    /// failure the group comes back with the error.
    ///
    /// Takes `&self`: the kernel allows attaching while mappings live (it
    /// replays them into the new group's IOMMU domain), so live
    /// [`DmaMapping`](crate::DmaMapping) guards do not prevent it. The new
    /// group's reserved regions may shrink the usable IOVA ranges: a refused
    /// map is explained from a fresh `VFIO_IOMMU_GET_INFO`.
    #[doc(alias = "VFIO_GROUP_SET_CONTAINER")]
    pub fn attach_more(&self, group: Group) -> Result<(), (Group, GroupError)> {
        self.attach_group(group)
    }

    /// Detaches every group (`VFIO_GROUP_UNSET_CONTAINER`, last attached
    /// first) and returns them with the container, back in the `Unset`
    /// state. VFIO's container drops all DMA mappings and the IOMMU model
    /// when the last group leaves; taking `self` by value guarantees no
    /// mapping guard is alive.
    ///
    /// VFIO's container refuses to detach a group while one of its devices
    /// is open (`EBUSY`): close the devices first. On such a failure the
    /// container comes back in its current state, still holding the groups
    /// that did not leave (so its model and mappings are intact, as in the
    /// kernel), with the groups that did leave beside it.
    ///
    /// iommufd's VFIO compatibility container (a kernel built with
    /// `CONFIG_IOMMUFD_VFIO_CONTAINER`) differs: a group leaves even with a
    /// device open (which stays attached and working), and mappings belong
    /// to the container fd, not to the groups, so mappings made with
    /// [`map_raw`](Container::map_raw) outlive the last group there until
    /// unmapped or until the container fd and every device are closed. The
    /// pages of guards whose unmap failed are released only once no mapping
    /// can remain on either kernel.
    #[doc(alias = "VFIO_GROUP_UNSET_CONTAINER")]
    pub fn release_groups(mut self) -> Result<(Container<Unset>, Vec<Group>), ReleaseError<S>> {
        let mut stay = self.inner.groups.take_all();
        let mut released = Vec::with_capacity(stay.len());
        while let Some(group) = stay.pop() {
            let result =
                self.inner
                    .kernel
                    .ioctl(group.as_fd(), req::VFIO_GROUP_UNSET_CONTAINER, Arg::None);
            if let Err(errno) = result {
                let id = group.id();
                stay.push(group);
                for group in stay {
                    self.inner.groups.push(group);
                }
                released.reverse();
                return Err(ReleaseError {
                    container: self,
                    released,
                    error: GroupError::Ioctl {
                        ioctl: req::VFIO_GROUP_UNSET_CONTAINER.name,
                        group: id,
                        errno,
                    },
                });
            }
            released.push(group);
        }
        released.reverse();
        // The last group left: VFIO's container dropped every mapping
        // (iommufd's compatibility container is made to, for the orphans).
        self.inner.last_group_left();
        #[cfg(feature = "type2")]
        {
            self.inner.type2 = Default::default();
        }
        Ok((self.into_state(), released))
    }
}

impl Container<Attached> {
    /// Selects IOMMU model `M` (`VFIO_CHECK_EXTENSION`, then
    /// `VFIO_SET_IOMMU`). On failure the container comes back unchanged.
    #[doc(alias = "VFIO_SET_IOMMU")]
    pub fn set_iommu<M: IommuModel>(self) -> Result<Container<M>, SetIommuError> {
        let fail = |container, error| Err(SetIommuError { container, error });
        match self.supports::<M>() {
            Ok(true) => {}
            Ok(false) => {
                return fail(
                    self,
                    ContainerError::Unsupported {
                        model: M::NAME,
                        id: M::ID,
                    },
                );
            }
            Err(error) => return fail(self, error),
        }
        if let Err(errno) = self.inner.kernel.ioctl(
            self.inner.fd.as_fd(),
            req::VFIO_SET_IOMMU,
            Arg::Int(M::ID as i32),
        ) {
            return fail(
                self,
                ContainerError::Ioctl {
                    ioctl: req::VFIO_SET_IOMMU.name,
                    errno,
                },
            );
        }
        Ok(self.into_state())
    }
}

/// A failed first attach: the container and the group, unchanged.
#[derive(Debug, thiserror::Error)]
#[error("attaching group {} failed: {error}", group.id())]
pub struct AttachError<S: ContainerState> {
    /// The container, as it was.
    pub container: Container<S>,
    /// The group that was not attached.
    pub group: Group,
    /// Why.
    #[source]
    pub error: GroupError,
}

/// A failed `release_groups`: the container in its state, with the groups
/// that could not leave, and the groups that did.
#[derive(Debug, thiserror::Error)]
#[error("releasing the container's groups failed: {error}")]
pub struct ReleaseError<S: HasGroups> {
    /// The container, still in its state, holding the groups that stayed.
    pub container: Container<S>,
    /// The groups that did leave, in attach order.
    pub released: Vec<Group>,
    /// Why the next one could not (`EBUSY`: a device of it is open).
    #[source]
    pub error: GroupError,
}

/// A failed `set_iommu`: the container, unchanged.
#[derive(Debug, thiserror::Error)]
#[error("setting the IOMMU model failed: {error}")]
pub struct SetIommuError {
    /// The container, still `Attached`.
    pub container: Container<Attached>,
    /// Why.
    #[source]
    pub error: ContainerError,
}

/// What `VFIO_IOMMU_GET_INFO` reports for a type1 container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuInfo {
    /// Bitmap of supported IOMMU page sizes (`VFIO_IOMMU_INFO_PGSIZES`).
    pub page_sizes: u64,
    /// Usable IOVA ranges, inclusive ends (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`);
    /// empty when the kernel gave none (then any IOVA may be tried).
    pub iova_ranges: Vec<IovaRange>,
    /// How many more DMA mappings the container may make
    /// (`VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`).
    pub dma_avail: Option<u32>,
    /// Migration capability: (flags, pgsize bitmap, max dirty bitmap size).
    pub migration: Option<(u32, u64, u64)>,
}

/// An IOVA range, `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub end: u64,
}

impl IovaRange {
    /// Whether `iova..iova + size` lies inside this range.
    #[inline]
    pub fn contains(&self, iova: u64, size: u64) -> bool {
        size > 0
            && iova >= self.start
            && iova
                .checked_add(size - 1)
                .is_some_and(|last| last <= self.end)
    }
}

impl IommuInfo {
    /// The smallest supported IOMMU page size (0 if the kernel reported none).
    #[inline]
    pub fn min_page_size(&self) -> u64 {
        if self.page_sizes == 0 {
            0
        } else {
            1 << self.page_sizes.trailing_zeros()
        }
    }

    /// Parses `VFIO_IOMMU_GET_INFO`'s bytes (the struct and its capability
    /// chain). The bytes are untrusted; see [`caps`](crate::caps).
    pub(crate) fn parse(buf: &[u8]) -> Result<IommuInfo, &'static str> {
        let (info, _) =
            sys::vfio_iommu_type1_info::read_from_prefix(buf).map_err(|_| "info truncated")?;
        let mut out = IommuInfo {
            page_sizes: if info.flags & sys::VFIO_IOMMU_INFO_PGSIZES != 0 {
                info.iova_pgsizes
            } else {
                0
            },
            iova_ranges: Vec::new(),
            dma_avail: None,
            migration: None,
        };
        if info.flags & sys::VFIO_IOMMU_INFO_CAPS == 0 {
            return Ok(out);
        }
        let len = (info.argsz as usize).min(buf.len());
        for cap in caps::chain(
            &buf[..len],
            info.cap_offset,
            size_of::<sys::vfio_iommu_type1_info>(),
        ) {
            let cap = cap?;
            match u32::from(cap.id) {
                sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                    let head: IovaRangeCap = cap.read().ok_or("IOVA range capability truncated")?;
                    let tail = cap.tail::<IovaRangeCap>();
                    let ranges = crate::abi::read_array::<sys::vfio_iova_range>(
                        tail,
                        head.nr_iovas as usize,
                    )
                    .ok_or("IOVA range capability: more ranges than bytes")?;
                    out.iova_ranges = ranges
                        .map(|r| IovaRange {
                            start: r.start,
                            end: r.end,
                        })
                        .collect();
                }
                sys::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
                    let c: sys::vfio_iommu_type1_info_dma_avail =
                        cap.read().ok_or("DMA_AVAIL capability truncated")?;
                    out.dma_avail = Some(c.avail);
                }
                sys::VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION => {
                    let c: sys::vfio_iommu_type1_info_cap_migration =
                        cap.read().ok_or("migration capability truncated")?;
                    out.migration = Some((c.flags, c.pgsize_bitmap, c.max_dirty_bitmap_size));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl<M: IommuModel> Container<M> {
    /// Opens a device by name (`VFIO_GROUP_GET_DEVICE_FD`; for PCI the name is
    /// the address, `0000:01:00.0`) from the attached groups, in attach
    /// order. Only exists once an IOMMU model is set: the kernel refuses
    /// device fds before that.
    #[doc(alias = "VFIO_GROUP_GET_DEVICE_FD")]
    pub fn open_device(&self, name: &str) -> Result<Device, GroupError> {
        self.open_device_any(name)
    }
}

impl<S: ContainerState> Container<S> {
    /// `open_device` for any state that has an IOMMU model.
    pub(crate) fn open_device_any(&self, name: &str) -> Result<Device, GroupError> {
        let mut last = None;
        for group in self.inner.groups.iter() {
            match group.open_device(name) {
                Ok(device) => return Ok(device),
                Err(e @ GroupError::NoDevice { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(GroupError::BadDeviceName { name: name.into() }))
    }
}

impl<M: DmaModel> Container<M> {
    /// The IOMMU's page sizes, IOVA ranges and mapping budget
    /// (`VFIO_IOMMU_GET_INFO`, asked twice when the capability chain does not
    /// fit the first buffer).
    #[doc(alias = "VFIO_IOMMU_GET_INFO")]
    pub fn iommu_info(&self) -> Result<IommuInfo, ContainerError> {
        query_iommu_info(&self.inner.kernel, self.inner.fd.as_fd())
    }
}

/// `VFIO_IOMMU_GET_INFO` on the container `fd` (also for a mapping's guard,
/// which holds only the fd).
pub(crate) fn query_iommu_info(
    kernel: &Kernel,
    fd: BorrowedFd<'_>,
) -> Result<IommuInfo, ContainerError> {
    let ioctl = req::VFIO_IOMMU_GET_INFO.name;
    let mut size = 256usize;
    for _ in 0..2 {
        let mut buf = vec![0u64; size.div_ceil(8)];
        let bytes = buf.as_mut_bytes();
        let mut head = sys::vfio_iommu_type1_info::new_zeroed();
        head.argsz = bytes.len() as u32;
        head.write_to_prefix(bytes)
            .map_err(|_| ContainerError::Malformed {
                ioctl,
                what: "buffer",
            })?;
        kernel
            .ioctl(fd, req::VFIO_IOMMU_GET_INFO, Arg::InOut(bytes))
            .map_err(|errno| ContainerError::Ioctl { ioctl, errno })?;
        let needed = u32::read_from_prefix(bytes)
            .map(|(v, _)| v as usize)
            .unwrap_or(0);
        if needed <= bytes.len() {
            return IommuInfo::parse(bytes)
                .map_err(|what| ContainerError::Malformed { ioctl, what });
        }
        if needed > 1 << 20 {
            return Err(ContainerError::Malformed {
                ioctl,
                what: "argsz over 1 MiB",
            });
        }
        size = needed;
    }
    Err(ContainerError::Malformed {
        ioctl,
        what: "argsz grew between calls",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `VFIO_IOMMU_GET_INFO` bytes like a 6.12 kernel's: header, an
    /// IOVA-range capability with `ranges`, then DMA_AVAIL.
    fn info_bytes(ranges: &[(u64, u64)], nr_claimed: u32, avail: u32) -> Vec<u8> {
        let mut b = Vec::new();
        let iova_cap = 24u32;
        let avail_cap = iova_cap + 16 + 16 * ranges.len() as u32;
        let total = avail_cap + 12;
        for w in [total, 3] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        b.extend_from_slice(&0x4020_1000u64.to_ne_bytes());
        b.extend_from_slice(&iova_cap.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        // IOVA range capability: id 1, version 1, next.
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&avail_cap.to_ne_bytes());
        b.extend_from_slice(&nr_claimed.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for &(s, e) in ranges {
            b.extend_from_slice(&s.to_ne_bytes());
            b.extend_from_slice(&e.to_ne_bytes());
        }
        // DMA_AVAIL: id 3, version 1, next 0, avail.
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&avail.to_ne_bytes());
        b
    }

    #[test]
    fn parses_iommu_info_like_linux_6_12() {
        let ranges = [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
        let info = IommuInfo::parse(&info_bytes(&ranges, 2, 65535)).unwrap();
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(info.min_page_size(), 0x1000);
        assert_eq!(
            info.iova_ranges,
            vec![
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0x7f_ffff_ffff
                }
            ]
        );
        assert_eq!(info.dma_avail, Some(65535));
        assert!(info.iova_ranges[0].contains(0x20_0000, 0x1000));
        assert!(
            !info
                .iova_ranges
                .iter()
                .any(|r| r.contains(0xfee0_0000, 0x1000))
        );
        assert!(!info.iova_ranges[0].contains(0xfedf_f000, 0x2000));
        assert!(!info.iova_ranges[0].contains(0, 0));
    }

    #[test]
    fn rejects_a_range_count_beyond_the_bytes() {
        let bytes = info_bytes(&[(0, 0xffff)], 1000, 1);
        assert!(IommuInfo::parse(&bytes).is_err());
    }

    #[test]
    fn every_truncation_is_an_error_or_a_partial_answer_never_a_panic() {
        let bytes = info_bytes(&[(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)], 2, 7);
        for cut in 0..bytes.len() {
            let _ = IommuInfo::parse(&bytes[..cut]);
        }
        assert!(IommuInfo::parse(&bytes[..10]).is_err());
    }
}
