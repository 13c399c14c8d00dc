/*
 * typed-vfio: the "type2" VFIO IOMMU extension for the Freescale/NXP PAMU.
 *
 * Written for this crate from the ABI facts of the Freescale SDK kernels
 * (3.8.13 SDK and the later OpenIL trees); never merged upstream. See
 * shared/type2.md in the project for the behaviour behind each item.
 *
 * Include after <linux/vfio.h>: it reuses VFIO_TYPE and VFIO_BASE.
 */
#ifndef TYPED_VFIO_TYPE2_H
#define TYPED_VFIO_TYPE2_H

#include <linux/types.h>
#include <linux/ioctl.h>

/*
 * IOMMU model ids of the PAMU container driver. The SDK 3.8.13 tree used 2,
 * the OpenIL tree 7. Both collide with upstream sPAPR ids (2 and 7), so a
 * CHECK_EXTENSION answer alone never proves a PAMU container.
 */
#define VFIO_FSL_PAMU_IOMMU_SDK 2
#define VFIO_FSL_PAMU_IOMMU_OPENIL 7

/* Attribute selectors for the PAMU attribute get/set requests. */
#define VFIO_ATTR_GEOMETRY 0
#define VFIO_ATTR_WINDOWS 1
#define VFIO_ATTR_PAMU_STASH 2

/* Cache levels a stash target may name. */
#define VFIO_PAMU_STASH_L1 1
#define VFIO_PAMU_STASH_L2 2
#define VFIO_PAMU_STASH_L3 3

/* Aperture [aperture_start, aperture_end]; the end is inclusive. */
struct vfio_pamu_geometry {
	__u64 aperture_start;
	__u64 aperture_end;
};

/* Where the PAMU stashes DMA data: a CPU and one of its cache levels. */
struct vfio_pamu_stash {
	__u32 cpu;
	__u32 cache;
};

/*
 * Argument of VFIO_IOMMU_PAMU_GET_ATTR / SET_ATTR (32 bytes). No flags are
 * defined. The union member in use is chosen by `attribute`.
 */
struct vfio_pamu_attr {
	__u32 argsz;
	__u32 flags;
	__u32 attribute;
	union {
		struct vfio_pamu_geometry geometry;
		__u32 windows;
		struct vfio_pamu_stash stash;
	} attr_info;
};

/*
 * Argument of VFIO_IOMMU_PAMU_MAP_MSI_BANK (24 bytes): put the doorbell page
 * of MSI bank `msi_bank_index` into the window that contains `iova`. The
 * shipped kernel wants VFIO_DMA_MAP_FLAG_READ and/or _WRITE in `flags`.
 */
struct vfio_pamu_msi_bank_map {
	__u32 argsz;
	__u32 flags;
	__u32 msi_bank_index;
	__u64 iova;
};

/* Argument of VFIO_IOMMU_PAMU_UNMAP_MSI_BANK (16 bytes): the mapped iova. */
struct vfio_pamu_msi_bank_unmap {
	__u32 argsz;
	__u32 flags;
	__u64 iova;
};

/* Container requests; the numbers are reused by other IOMMU models. */
#define VFIO_IOMMU_PAMU_GET_ATTR _IO(VFIO_TYPE, VFIO_BASE + 15)
#define VFIO_IOMMU_PAMU_SET_ATTR _IO(VFIO_TYPE, VFIO_BASE + 16)
/* No argument; the ioctl's return value is the number of MSI banks. */
#define VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT _IO(VFIO_TYPE, VFIO_BASE + 17)
#define VFIO_IOMMU_PAMU_MAP_MSI_BANK _IO(VFIO_TYPE, VFIO_BASE + 18)
#define VFIO_IOMMU_PAMU_UNMAP_MSI_BANK _IO(VFIO_TYPE, VFIO_BASE + 19)

#endif
