//! One function per VFIO request, each taking the fd class the request
//! belongs to.
//!
//! These are the nix `_bad` ioctl forms (VFIO encodes its requests with `_IO`,
//! no size and no direction, yet passes pointers) around the request codes that
//! bindgen evaluated from the headers. All are `unsafe`: the kernel reads and
//! writes through the argument pointer, trusting its `argsz`.
//!
//! # Safety (common to every function here)
//!
//! - `fd` must really be an fd of the named class, served by a driver that
//!   gives the request the meaning documented in `linux/vfio.h` (or
//!   `headers/vfio_type2.h` for the PAMU requests): VFIO reuses numbers, so
//!   the same code means something else elsewhere.
//! - For a pointer argument: it must point to an initialized value of the
//!   named type that stays valid for the duration of the call, and the memory
//!   the kernel may read or write — the value's `argsz` bytes where the
//!   struct has an `argsz` field, or the whole pointee otherwise — must be
//!   owned by the caller and, for the read-write forms, writable and not
//!   aliased by any reference.
//! - Any fd or address the argument carries (eventfds, group fds, `vaddr`)
//!   must satisfy the request's own contract; in particular `MAP_DMA` lets the
//!   device write the mapped memory until it is unmapped.

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;

use super::*;

macro_rules! requests {
    ($( $(#[$doc:meta])* $class:ident $name:ident = $req:ident $kind:tt; )*) => {
        $( request!($(#[$doc])* $class $name $req $kind); )*
    };
}

macro_rules! request {
    ($(#[$doc:meta])* $class:ident $name:ident $req:ident ()) => {
        $(#[$doc])*
        #[doc = concat!("\n\nIssues `", stringify!($req), "` with no argument.")]
        ///
        /// # Safety
        ///
        /// See the [module documentation](self).
        pub unsafe fn $name(fd: $class<'_>) -> nix::Result<c_int> {
            nix::ioctl_none_bad!(raw, $req);
            // SAFETY: the caller upholds this module's contract for `fd`; the
            // request takes no argument.
            unsafe { raw(fd.as_raw_fd()) }
        }
    };
    ($(#[$doc:meta])* $class:ident $name:ident $req:ident (int)) => {
        $(#[$doc])*
        #[doc = concat!("\n\nIssues `", stringify!($req), "` with an integer argument.")]
        ///
        /// # Safety
        ///
        /// See the [module documentation](self).
        pub unsafe fn $name(fd: $class<'_>, arg: c_int) -> nix::Result<c_int> {
            nix::ioctl_write_int_bad!(raw, $req);
            // SAFETY: the caller upholds this module's contract for `fd`; an
            // integer argument carries no memory.
            unsafe { raw(fd.as_raw_fd(), arg) }
        }
    };
    ($(#[$doc:meta])* $class:ident $name:ident $req:ident (ptr $ty:ty)) => {
        $(#[$doc])*
        #[doc = concat!("\n\nIssues `", stringify!($req), "`; the kernel reads `*arg`.")]
        ///
        /// # Safety
        ///
        /// See the [module documentation](self).
        pub unsafe fn $name(fd: $class<'_>, arg: *const $ty) -> nix::Result<c_int> {
            nix::ioctl_write_ptr_bad!(raw, $req, $ty);
            // SAFETY: the caller upholds this module's contract for `fd` and
            // for the memory behind `arg`.
            unsafe { raw(fd.as_raw_fd(), arg) }
        }
    };
    ($(#[$doc:meta])* $class:ident $name:ident $req:ident (rw $ty:ty)) => {
        $(#[$doc])*
        #[doc = concat!("\n\nIssues `", stringify!($req), "`; the kernel reads and writes `*arg`.")]
        ///
        /// # Safety
        ///
        /// See the [module documentation](self).
        pub unsafe fn $name(fd: $class<'_>, arg: *mut $ty) -> nix::Result<c_int> {
            nix::ioctl_readwrite_bad!(raw, $req, $ty);
            // SAFETY: the caller upholds this module's contract for `fd` and
            // for the memory behind `arg`.
            unsafe { raw(fd.as_raw_fd(), arg) }
        }
    };
}

requests! {
    /// Container: the VFIO API version (`VFIO_API_VERSION`) as the return value.
    ContainerFd vfio_get_api_version = VFIO_GET_API_VERSION ();
    /// Container: whether an extension / IOMMU model id is supported (return value > 0).
    ContainerFd vfio_check_extension = VFIO_CHECK_EXTENSION (int);
    /// Container: select the IOMMU model; needs at least one group attached.
    ContainerFd vfio_set_iommu = VFIO_SET_IOMMU (int);
    /// Container (type1): IOMMU info with its capability chain.
    ContainerFd vfio_iommu_get_info = VFIO_IOMMU_GET_INFO (rw vfio_iommu_type1_info);
    /// Container (type1, PAMU): map a range of process memory for DMA.
    ContainerFd vfio_iommu_map_dma = VFIO_IOMMU_MAP_DMA (ptr vfio_iommu_type1_dma_map);
    /// Container (type1, PAMU): unmap; the kernel writes back the unmapped size.
    ContainerFd vfio_iommu_unmap_dma = VFIO_IOMMU_UNMAP_DMA (rw vfio_iommu_type1_dma_unmap);
    /// Container (sPAPR): enable the IOMMU.
    ContainerFd vfio_iommu_enable = VFIO_IOMMU_ENABLE ();
    /// Container (sPAPR): disable the IOMMU.
    ContainerFd vfio_iommu_disable = VFIO_IOMMU_DISABLE ();
    /// Container (type1): dirty page tracking.
    ContainerFd vfio_iommu_dirty_pages = VFIO_IOMMU_DIRTY_PAGES (rw vfio_iommu_type1_dirty_bitmap);
    /// Container (sPAPR): TCE window info.
    ContainerFd vfio_iommu_spapr_tce_get_info = VFIO_IOMMU_SPAPR_TCE_GET_INFO (rw vfio_iommu_spapr_tce_info);
    /// Container (sPAPR): EEH partitionable-endpoint operation.
    ContainerFd vfio_eeh_pe_op = VFIO_EEH_PE_OP (ptr vfio_eeh_pe_op);
    /// Container (sPAPR v2): pre-register memory.
    ContainerFd vfio_iommu_spapr_register_memory = VFIO_IOMMU_SPAPR_REGISTER_MEMORY (ptr vfio_iommu_spapr_register_memory);
    /// Container (sPAPR v2): unregister memory.
    ContainerFd vfio_iommu_spapr_unregister_memory = VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (ptr vfio_iommu_spapr_register_memory);
    /// Container (sPAPR v2): create a DMA window.
    ContainerFd vfio_iommu_spapr_tce_create = VFIO_IOMMU_SPAPR_TCE_CREATE (rw vfio_iommu_spapr_tce_create);
    /// Container (sPAPR v2): remove a DMA window.
    ContainerFd vfio_iommu_spapr_tce_remove = VFIO_IOMMU_SPAPR_TCE_REMOVE (ptr vfio_iommu_spapr_tce_remove);
    /// Container (PAMU only): read an attribute (geometry, windows, stash).
    ContainerFd vfio_iommu_pamu_get_attr = VFIO_IOMMU_PAMU_GET_ATTR (rw vfio_pamu_attr);
    /// Container (PAMU only): set an attribute. The SDK kernel may swallow errors.
    ContainerFd vfio_iommu_pamu_set_attr = VFIO_IOMMU_PAMU_SET_ATTR (ptr vfio_pamu_attr);
    /// Container (PAMU only): the number of MSI banks, as the return value.
    ContainerFd vfio_iommu_pamu_get_msi_bank_count = VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT ();
    /// Container (PAMU only): map an MSI bank's doorbell into a window.
    ContainerFd vfio_iommu_pamu_map_msi_bank = VFIO_IOMMU_PAMU_MAP_MSI_BANK (ptr vfio_pamu_msi_bank_map);
    /// Container (PAMU only): unmap an MSI bank by its iova.
    ContainerFd vfio_iommu_pamu_unmap_msi_bank = VFIO_IOMMU_PAMU_UNMAP_MSI_BANK (ptr vfio_pamu_msi_bank_unmap);

    /// Group: viability and container status.
    GroupFd vfio_group_get_status = VFIO_GROUP_GET_STATUS (rw vfio_group_status);
    /// Group: attach to the container whose fd `*arg` is.
    GroupFd vfio_group_set_container = VFIO_GROUP_SET_CONTAINER (ptr c_int);
    /// Group: leave the container.
    GroupFd vfio_group_unset_container = VFIO_GROUP_UNSET_CONTAINER ();
    /// Group: open a device by its NUL-terminated name; the new fd is the return value.
    GroupFd vfio_group_get_device_fd = VFIO_GROUP_GET_DEVICE_FD (ptr c_char);

    /// Device: flags, region and IRQ counts, capability chain.
    DeviceFd vfio_device_get_info = VFIO_DEVICE_GET_INFO (rw vfio_device_info);
    /// Device: one region's size, offset, flags and capability chain.
    DeviceFd vfio_device_get_region_info = VFIO_DEVICE_GET_REGION_INFO (rw vfio_region_info);
    /// Device: one IRQ index's flags and count.
    DeviceFd vfio_device_get_irq_info = VFIO_DEVICE_GET_IRQ_INFO (rw vfio_irq_info);
    /// Device: set, trigger, mask, unmask or tear down IRQ actions.
    DeviceFd vfio_device_set_irqs = VFIO_DEVICE_SET_IRQS (ptr vfio_irq_set);
    /// Device: function-level reset.
    DeviceFd vfio_device_reset = VFIO_DEVICE_RESET ();
    /// Device (PCI): the devices affected by a hot reset.
    DeviceFd vfio_device_get_pci_hot_reset_info = VFIO_DEVICE_GET_PCI_HOT_RESET_INFO (rw vfio_pci_hot_reset_info);
    /// Device (PCI): hot reset, proving ownership with group fds.
    DeviceFd vfio_device_pci_hot_reset = VFIO_DEVICE_PCI_HOT_RESET (ptr vfio_pci_hot_reset);
    /// Device (mdev display): query a graphics plane.
    DeviceFd vfio_device_query_gfx_plane = VFIO_DEVICE_QUERY_GFX_PLANE (rw vfio_device_gfx_plane_info);
    /// Device (mdev display): get a dmabuf fd for a plane.
    DeviceFd vfio_device_get_gfx_dmabuf = VFIO_DEVICE_GET_GFX_DMABUF (ptr u32);
    /// Device: attach an ioeventfd to a region address.
    DeviceFd vfio_device_ioeventfd = VFIO_DEVICE_IOEVENTFD (ptr vfio_device_ioeventfd);
    /// Device: probe, get or set a device feature.
    DeviceFd vfio_device_feature = VFIO_DEVICE_FEATURE (rw vfio_device_feature);
    /// Device (cdev): bind to an iommufd.
    DeviceFd vfio_device_bind_iommufd = VFIO_DEVICE_BIND_IOMMUFD (rw vfio_device_bind_iommufd);
    /// Device (cdev): attach to an IOAS or HWPT; the kernel writes back the id used.
    DeviceFd vfio_device_attach_iommufd_pt = VFIO_DEVICE_ATTACH_IOMMUFD_PT (rw vfio_device_attach_iommufd_pt);
    /// Device (cdev): detach from its IOAS or HWPT.
    DeviceFd vfio_device_detach_iommufd_pt = VFIO_DEVICE_DETACH_IOMMUFD_PT (ptr vfio_device_detach_iommufd_pt);

    /// iommufd: destroy an object by id.
    IommufdFd iommu_destroy = IOMMU_DESTROY (ptr iommu_destroy);
    /// iommufd: allocate an I/O address space.
    IommufdFd iommu_ioas_alloc = IOMMU_IOAS_ALLOC (rw iommu_ioas_alloc);
    /// iommufd: the usable IOVA ranges of an IOAS.
    IommufdFd iommu_ioas_iova_ranges = IOMMU_IOAS_IOVA_RANGES (rw iommu_ioas_iova_ranges);
    /// iommufd: restrict the IOVAs an IOAS may allocate.
    IommufdFd iommu_ioas_allow_iovas = IOMMU_IOAS_ALLOW_IOVAS (ptr iommu_ioas_allow_iovas);
    /// iommufd: map process memory into an IOAS.
    IommufdFd iommu_ioas_map = IOMMU_IOAS_MAP (rw iommu_ioas_map);
    /// iommufd: copy a mapping between IOASes.
    IommufdFd iommu_ioas_copy = IOMMU_IOAS_COPY (rw iommu_ioas_copy);
    /// iommufd: unmap a range of an IOAS.
    IommufdFd iommu_ioas_unmap = IOMMU_IOAS_UNMAP (rw iommu_ioas_unmap);
    /// iommufd: get or set an option.
    IommufdFd iommu_option = IOMMU_OPTION (rw iommu_option);
    /// iommufd: the VFIO compatibility IOAS.
    IommufdFd iommu_vfio_ioas = IOMMU_VFIO_IOAS (rw iommu_vfio_ioas);
    /// iommufd: allocate a hardware page table.
    IommufdFd iommu_hwpt_alloc = IOMMU_HWPT_ALLOC (rw iommu_hwpt_alloc);
    /// iommufd: hardware IOMMU information for a device.
    IommufdFd iommu_get_hw_info = IOMMU_GET_HW_INFO (rw iommu_hw_info);
    /// iommufd: enable or disable dirty tracking of a HWPT.
    IommufdFd iommu_hwpt_set_dirty_tracking = IOMMU_HWPT_SET_DIRTY_TRACKING (ptr iommu_hwpt_set_dirty_tracking);
    /// iommufd: read and clear a HWPT's dirty bitmap.
    IommufdFd iommu_hwpt_get_dirty_bitmap = IOMMU_HWPT_GET_DIRTY_BITMAP (rw iommu_hwpt_get_dirty_bitmap);
    /// iommufd: invalidate a nested HWPT's caches.
    IommufdFd iommu_hwpt_invalidate = IOMMU_HWPT_INVALIDATE (rw iommu_hwpt_invalidate);
    /// iommufd: allocate a fault queue.
    IommufdFd iommu_fault_queue_alloc = IOMMU_FAULT_QUEUE_ALLOC (rw iommu_fault_alloc);
}
