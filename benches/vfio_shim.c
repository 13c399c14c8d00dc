/*
 * A stand-in VFIO for counting the user-space instructions of the
 * benchmark's hot paths on a machine without VFIO (benches/icount).
 *
 * LD_PRELOADed into the benchmark (benches/guest/): opens of /dev/vfio/... and /dev/iommu
 * get a /dev/null fd, and ioctls on those fds are answered here with the
 * shapes Linux 6.12 gives for an edu device behind a type1v2 IOMMU, or bound
 * to an iommufd through its cdev (the values the VM rig observed). Every
 * other call goes to the C library. The answers only
 * need to let the three contenders reach their loops; the point is that all
 * three pay the same, constant cost here, so differences in instruction
 * counts are differences in the callers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/vfio.h>
#include <linux/iommufd.h>

enum kind { NONE, CONTAINER, GROUP, DEVICE, IOMMUFD };
#define MAX_FD 4096
static unsigned char kinds[MAX_FD];
static unsigned char group_set[MAX_FD];

static int (*real_open)(const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);

static int fake(const char *path)
{
    if (!real_open)
        real_open = dlsym(RTLD_NEXT, "open");
    int fd = real_open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0 && fd < MAX_FD) {
        kinds[fd] = strcmp(path, "/dev/vfio/vfio") == 0 ? CONTAINER
                  : strcmp(path, "/dev/iommu") == 0 ? IOMMUFD
                  : strncmp(path, "/dev/vfio/devices/", 18) == 0 ? DEVICE
                  : GROUP;
        group_set[fd] = 0;
    }
    return fd;
}

static int is_vfio(const char *path)
{
    return path && (strncmp(path, "/dev/vfio/", 10) == 0 || strcmp(path, "/dev/iommu") == 0);
}

#define OPEN_WRAPPER(name)                                             \
    int name(const char *path, int flags, ...)                        \
    {                                                                  \
        static int (*next)(const char *, int, ...);                    \
        mode_t mode = 0;                                               \
        if (flags & (O_CREAT | O_TMPFILE)) {                           \
            va_list ap;                                                \
            va_start(ap, flags);                                       \
            mode = va_arg(ap, mode_t);                                 \
            va_end(ap);                                                \
        }                                                              \
        if (is_vfio(path))                                             \
            return fake(path);                                         \
        if (!next)                                                     \
            next = dlsym(RTLD_NEXT, #name);                            \
        return next(path, flags, mode);                                \
    }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                           \
    int name(int dir, const char *path, int flags, ...)               \
    {                                                                  \
        static int (*next)(int, const char *, int, ...);               \
        mode_t mode = 0;                                               \
        if (flags & (O_CREAT | O_TMPFILE)) {                           \
            va_list ap;                                                \
            va_start(ap, flags);                                       \
            mode = va_arg(ap, mode_t);                                 \
            va_end(ap);                                                \
        }                                                              \
        if (is_vfio(path))                                             \
            return fake(path);                                         \
        if (!next)                                                     \
            next = dlsym(RTLD_NEXT, #name);                            \
        return next(dir, path, flags, mode);                           \
    }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

/* VFIO_IOMMU_GET_INFO as Linux 6.12 answers it (flags PGSIZES | CAPS):
 * MIGRATION @24, DMA_AVAIL @56, IOVA_RANGE @72, 120 bytes in all. */
static void iommu_info(void *arg)
{
    uint32_t *w = arg;
    uint32_t argsz = w[0];
    unsigned char out[120];
    memset(out, 0, sizeof out);
    uint32_t *o = (uint32_t *)out;
    uint64_t *q = (uint64_t *)out;
    o[0] = 120;
    o[1] = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    q[1] = 0x40201000;
    if (argsz < 120) {
        memcpy(arg, out, argsz < 24 ? argsz : 24);
        return;
    }
    o[4] = 24;
    /* MIGRATION: id 2, version 1, next 56; flags, pgsize, max bitmap */
    o[6] = 2 | 1u << 16, o[7] = 56, q[5] = 0x1000, q[6] = 0x10000000;
    /* DMA_AVAIL: id 3, version 1, next 72; avail */
    o[14] = 3 | 1u << 16, o[15] = 72, o[16] = 65535;
    /* IOVA_RANGE: id 1, version 1, next 0; nr_iovas 2; ranges */
    o[18] = 1 | 1u << 16, o[19] = 0, o[20] = 2;
    q[11] = 0, q[12] = 0xfedfffff, q[13] = 0xfef00000, q[14] = 0x7fffffffffULL;
    memcpy(arg, out, 120);
}

static int answer(int fd, unsigned long req, void *arg)
{
    uint32_t *w = arg;
    switch (req) {
    case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
        return 1;
    case VFIO_SET_IOMMU:
        return 0;
    case VFIO_IOMMU_GET_INFO:
        iommu_info(arg);
        return 0;
    case VFIO_IOMMU_MAP_DMA: /* == VFIO_DEVICE_PCI_HOT_RESET */
    case VFIO_IOMMU_UNMAP_DMA: /* size left as asked: all of it unmapped */
        return 0;
    case VFIO_GROUP_GET_STATUS:
        w[1] = VFIO_GROUP_FLAGS_VIABLE | (group_set[fd] ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0);
        return 0;
    case VFIO_GROUP_SET_CONTAINER:
        group_set[fd] = 1;
        return 0;
    case VFIO_GROUP_UNSET_CONTAINER:
        group_set[fd] = 0;
        return 0;
    case VFIO_GROUP_GET_DEVICE_FD: {
        /* A 1 MiB memfd: BAR0 can be mmap-ed (the doorbell count). */
        int d = memfd_create("vfio-device", MFD_CLOEXEC);
        if (d >= 0 && ftruncate(d, 0x100000) != 0) {
            close(d);
            d = -1;
        }
        if (d >= 0 && d < MAX_FD) {
            kinds[d] = DEVICE;
            group_set[d] = 0;
        }
        return d;
    }
    case VFIO_DEVICE_GET_INFO: /* PCI | RESET, 9 regions, 5 IRQ indexes */
        w[1] = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, w[2] = 9, w[3] = 5, w[4] = 0;
        return 0;
    case VFIO_DEVICE_GET_IRQ_INFO: /* INTx maskable/automasked, others one vector */
        w[1] = w[2] == 0 ? 0x7 : 0x9, w[3] = w[2] <= 2 ? 1 : 0;
        return 0;
    case VFIO_DEVICE_GET_REGION_INFO: { /* BAR0 1 MiB (mmap-able), config 256 B, rest empty */
        uint64_t *q = arg;
        uint32_t index = w[2];
        w[1] = index == 0 ? 0x7 : index == 7 ? 0x3 : 0, w[3] = 0;
        q[2] = index == 0 ? 0x100000 : index == 7 ? 0x100 : 0;
        q[3] = (uint64_t)index << 40;
        return 0;
    }
    case VFIO_DEVICE_SET_IRQS:
    case VFIO_DEVICE_RESET:
        return 0;
    /* iommufd and the cdev: one IOAS id, one device id, one HWPT id. */
    case VFIO_DEVICE_BIND_IOMMUFD: /* out_devid */
        w[3] = 1;
        return 0;
    case VFIO_DEVICE_ATTACH_IOMMUFD_PT: /* pt_id: the automatic HWPT */
        w[2] = 3;
        return 0;
    case VFIO_DEVICE_DETACH_IOMMUFD_PT:
        return 0;
    case IOMMU_IOAS_ALLOC: /* out_ioas_id */
        w[2] = 2;
        return 0;
    case IOMMU_IOAS_MAP: /* FIXED_IOVA: iova left as given */
    case IOMMU_IOAS_UNMAP: /* length left as asked: all of it unmapped */
    case IOMMU_DESTROY:
        return 0;
    default:
        return -1;
    }
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fd >= 0 && fd < MAX_FD && kinds[fd] != NONE)
        return answer(fd, req, arg);
    if (!real_ioctl)
        real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    return real_ioctl(fd, req, arg);
}

int close(int fd)
{
    static int (*next)(int);
    if (fd >= 0 && fd < MAX_FD)
        kinds[fd] = NONE;
    if (!next)
        next = dlsym(RTLD_NEXT, "close");
    return next(fd);
}

/* A duplicate of a stand-in fd stands in for the same object (iommufd-ioctls
 * is handed a duplicate of the typed contender's iommufd). */
static int duplicated(int fd, int r)
{
    if (r >= 0 && r < MAX_FD && fd >= 0 && fd < MAX_FD) {
        kinds[r] = kinds[fd];
        group_set[r] = group_set[fd];
    }
    return r;
}

#define FCNTL_WRAPPER(name)                                                   \
    int name(int fd, int cmd, ...)                                            \
    {                                                                         \
        static int (*next)(int, int, ...);                                    \
        va_list ap;                                                           \
        va_start(ap, cmd);                                                    \
        long arg = va_arg(ap, long);                                          \
        va_end(ap);                                                           \
        if (!next)                                                            \
            next = dlsym(RTLD_NEXT, #name);                                   \
        int r = next(fd, cmd, arg);                                           \
        return cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC ? duplicated(fd, r) : r; \
    }
FCNTL_WRAPPER(fcntl)
FCNTL_WRAPPER(fcntl64)

int dup(int fd)
{
    static int (*next)(int);
    if (!next)
        next = dlsym(RTLD_NEXT, "dup");
    return duplicated(fd, next(fd));
}
