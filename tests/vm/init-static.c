/*
 * Guest /init for tests/vm/run where there is no busybox: the 32-bit
 * big-endian PowerPC guest (ppc32-noiommu; Debian builds no big-endian
 * PowerPC busybox). Built by tests/vm/run with powerpc-linux-gnu-gcc -static.
 *
 * tests/vm/init.sh is the reference: this program does what it does for a
 * no-IOMMU configuration without modules, and prints the same lines where
 * the host's `evaluate` (tests/vm/run) reads them (the tvfio-init: lines
 * with the TVFIO_* values and ERROR, the BEGIN/END markers, the kernel
 * messages after the tests). No tour, inspector or benchmark. Change the
 * marker lines in both places or in neither.
 *
 * 1. mounts proc, sysfs, devtmpfs, and a tmpfs on /tmp;
 * 2. binds every QEMU edu device (1234:11e8) to vfio-pci (driver_override +
 *    drivers_probe);
 * 3. exports TVFIO_CONFIG, TVFIO_IOMMU, TVFIO_COMPAT, TVFIO_DEVICES,
 *    TVFIO_GROUPS, TVFIO_NONVIABLE (empty: no-IOMMU groups hold one device
 *    each, so none is non-viable) and runs
 *    /vm_guest --ignored --test-threads=1 --nocapture [--skip S...] [FILTER];
 * 4. prints the kernel messages logged during the tests and powers off
 *    (reboot(RB_POWER_OFF): the ppce500 machine's gpio-poweroff; QEMU exits
 *    0 and the host takes the status from the end marker).
 *
 * Settings come from the kernel command line as for init.sh: tvfio.config=,
 * tvfio.iommu=, tvfio.compat=, tvfio.filter=, tvfio.skip=S1,S2.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char cmdline[4096];
static int setup_ok = 1;

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("tvfio-init: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

/* param NAME: the value of NAME=VALUE on the kernel command line, or NULL. */
static const char *param(const char *name)
{
    static char values[8][1024];
    static int next;
    size_t n = strlen(name);
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ' || *p == '\n')
            p++;
        const char *end = p;
        while (*end && *end != ' ' && *end != '\n')
            end++;
        if ((size_t)(end - p) > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            char *v = values[next++ % 8];
            size_t len = (size_t)(end - p) - n - 1;
            if (len >= sizeof values[0])
                len = sizeof values[0] - 1;
            memcpy(v, p + n + 1, len);
            v[len] = '\0';
            return v;
        }
        p = end;
    }
    return NULL;
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

static int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

/* link_base DIR NAME: the basename of the symlink DIR/NAME's target, or "". */
static void link_base(const char *dir, const char *name, char *out, size_t size)
{
    char path[PATH_MAX], target[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    target[n] = '\0';
    const char *b = strrchr(target, '/');
    snprintf(out, size, "%s", b ? b + 1 : target);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Binds every PCI device vendor:device ("0x1234", "0x11e8") to vfio-pci;
 * fills devices and groups (space separated, as init.sh's TVFIO_DEVICES /
 * TVFIO_GROUPS); returns how many it found. */
static int bind_matching(const char *want_vendor, const char *want_device, const char *what,
                         char *devices, char *groups, size_t size)
{
    int found = 0;
    DIR *d = opendir("/sys/bus/pci/devices");
    struct dirent *e;
    char *names[64];
    int count = 0;
    devices[0] = groups[0] = '\0';
    if (!d) {
        say("ERROR: no /sys/bus/pci/devices");
        setup_ok = 0;
        return 0;
    }
    while ((e = readdir(d)) && count < 64)
        if (e->d_name[0] != '.')
            names[count++] = strdup(e->d_name);
    closedir(d);
    /* the order of the shell glob in init.sh */
    qsort(names, (size_t)count, sizeof names[0], cmp_str);
    for (int i = 0; i < count; i++) {
        char dir[PATH_MAX], path[PATH_MAX], vendor[32], device[32], drv[256], grp[256];
        snprintf(dir, sizeof dir, "/sys/bus/pci/devices/%s", names[i]);
        snprintf(path, sizeof path, "%s/vendor", dir);
        if (read_file(path, vendor, sizeof vendor) || strcmp(vendor, want_vendor))
            continue;
        snprintf(path, sizeof path, "%s/device", dir);
        if (read_file(path, device, sizeof device) || strcmp(device, want_device))
            continue;
        found++;
        /* bind_vfio: from its driver, if any, to vfio-pci */
        snprintf(path, sizeof path, "%s/driver/unbind", dir);
        if (access(path, F_OK) == 0 && write_file(path, names[i]))
            say("%s: %s", path, strerror(errno));
        snprintf(path, sizeof path, "%s/driver_override", dir);
        if (write_file(path, "vfio-pci"))
            say("%s: %s", path, strerror(errno));
        if (write_file("/sys/bus/pci/drivers_probe", names[i]))
            say("/sys/bus/pci/drivers_probe <- %s: %s", names[i], strerror(errno));
        link_base(dir, "driver", drv, sizeof drv);
        link_base(dir, "iommu_group", grp, sizeof grp);
        if (grp[0]) {
            char node[PATH_MAX];
            snprintf(node, sizeof node, "/dev/vfio/noiommu-%s", grp);
            if (access(node, F_OK) == 0) {
                snprintf(node, sizeof node, "noiommu-%s", grp);
                snprintf(grp, sizeof grp, "%s", node);
            }
        }
        say("%s %s driver=%s group=%s", what, names[i], drv[0] ? drv : "none", grp[0] ? grp : "none");
        if (strcmp(drv, "vfio-pci") || !grp[0]) {
            say("ERROR: could not bind %s to vfio-pci", names[i]);
            setup_ok = 0;
        }
        if (devices[0])
            strncat(devices, " ", size - strlen(devices) - 1);
        strncat(devices, names[i], size - strlen(devices) - 1);
        if (groups[0])
            strncat(groups, " ", size - strlen(groups) - 1);
        strncat(groups, grp[0] ? grp : "none", size - strlen(groups) - 1);
    }
    for (int i = 0; i < count; i++)
        free(names[i]);
    return found;
}

static void list_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    if (!d) {
        printf("%s: %s\n", path, strerror(errno));
        return;
    }
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            printf("%s\n", e->d_name);
    closedir(d);
    fflush(stdout);
}

/* The kernel log: print (SYSLOG_ACTION_READ_ALL) and/or clear it. */
static void dmesg(int print, int clear)
{
    static char buf[1 << 17];
    int n = klogctl(clear ? 4 : 3, buf, sizeof buf); /* READ_CLEAR : READ_ALL */
    if (n > 0 && print) {
        fwrite(buf, 1, (size_t)n, stdout);
        if (buf[n - 1] != '\n')
            putchar('\n');
        fflush(stdout);
    }
}

static void finish(void)
{
    sync();
    reboot(RB_POWER_OFF);
    say("power-off failed (%s); halting", strerror(errno));
    reboot(RB_HALT_SYSTEM);
    for (;;)
        pause();
}

int main(void)
{
    char devices[1024], groups[1024];

    setenv("PATH", "/bin:/sbin", 1);
    setenv("HOME", "/root", 1);
    setenv("TMPDIR", "/tmp", 1);
    setenv("RUST_BACKTRACE", "1", 1);
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    mkdir("/dev", 0755);
    mkdir("/tmp", 01777);
    if (mount("proc", "/proc", "proc", 0, NULL))
        say("ERROR: mount /proc: %s", strerror(errno));
    if (mount("sysfs", "/sys", "sysfs", 0, NULL))
        say("ERROR: mount /sys: %s", strerror(errno));
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) && errno != EBUSY)
        say("ERROR: mount /dev: %s", strerror(errno));
    if (mount("tmpfs", "/tmp", "tmpfs", 0, NULL))
        say("ERROR: mount /tmp: %s", strerror(errno));
    /* stdout/stderr: the console (the kernel may have opened none for us) */
    int con = open("/dev/console", O_RDWR | O_NOCTTY);
    if (con >= 0) {
        dup2(con, 0);
        dup2(con, 1);
        dup2(con, 2);
        if (con > 2)
            close(con);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (read_file("/proc/cmdline", cmdline, sizeof cmdline))
        cmdline[0] = '\0';
    const char *config = param("tvfio.config");
    const char *iommu = param("tvfio.iommu");
    const char *compat = param("tvfio.compat");
    const char *filter = param("tvfio.filter");
    const char *skip = param("tvfio.skip");
    config = config ? config : "unknown";
    iommu = iommu ? iommu : "unknown";
    compat = compat ? compat : "0";
    char release[256] = "";
    read_file("/proc/sys/kernel/osrelease", release, sizeof release);
    say("config=%s iommu=%s compat=%s kernel=%s", config, iommu, compat, release);

    if (!bind_matching("0x1234", "0x11e8", "edu", devices, groups, sizeof devices)) {
        say("ERROR: no edu device (1234:11e8) found");
        setup_ok = 0;
    }
    /* A genuinely little-endian PCI device (QEMU's nvme, 1b36:0010), when
     * the machine has one: TVFIO_LE_DEVICE="<address> <group>". */
    char le_dev[256], le_grp[256], le[600];
    bind_matching("0x1b36", "0x0010", "nvme", le_dev, le_grp, sizeof le_dev);
    snprintf(le, sizeof le, "%s%s%s", le_dev, le_dev[0] ? " " : "", le_grp);
    say("/dev/vfio:");
    list_dir("/dev/vfio");
    if (!setup_ok)
        say("ERROR: setup incomplete, running the tests anyway");

    setenv("TVFIO_CONFIG", config, 1);
    setenv("TVFIO_IOMMU", iommu, 1);
    setenv("TVFIO_COMPAT", compat, 1);
    setenv("TVFIO_DEVICES", devices, 1);
    setenv("TVFIO_GROUPS", groups, 1);
    setenv("TVFIO_NONVIABLE", "", 1);
    setenv("TVFIO_LE_DEVICE", le, 1);
    say("TVFIO_CONFIG=%s", config);
    say("TVFIO_IOMMU=%s", iommu);
    say("TVFIO_COMPAT=%s", compat);
    say("TVFIO_DEVICES=%s", devices);
    say("TVFIO_GROUPS=%s", groups);
    say("TVFIO_NONVIABLE=");
    say("TVFIO_LE_DEVICE=%s", le);

    /* /vm_guest --ignored --test-threads=1 --nocapture [--skip S]... [FILTER] */
    char skips[2048];
    char *argv[128];
    int argc = 0;
    argv[argc++] = "/vm_guest";
    argv[argc++] = "--ignored";
    argv[argc++] = "--test-threads=1";
    argv[argc++] = "--nocapture";
    snprintf(skips, sizeof skips, "%s", skip ? skip : "");
    for (char *s = strtok(skips, ","); s && argc < 120; s = strtok(NULL, ",")) {
        argv[argc++] = "--skip";
        argv[argc++] = s;
    }
    if (filter && filter[0])
        argv[argc++] = (char *)filter;
    argv[argc] = NULL;

    /* keep kernel messages off the console while the tests run */
    dmesg(0, 1);
    klogctl(8, NULL, 1); /* SYSLOG_ACTION_CONSOLE_LEVEL 1, as dmesg -n 1 */
    if (skip && skip[0])
        say("not run here (libtest --skip): %s", skip);
    printf("=== TVFIO BEGIN config=%s ===\n", config);
    fflush(stdout);
    int status = 127;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "tvfio-init: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid > 0) {
        int ws;
        /* PID 1 also reaps orphans: wait for this child only */
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            ;
        status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    } else {
        say("fork: %s", strerror(errno));
    }
    printf("=== TVFIO END config=%s status=%d ===\n", config, status);
    printf("=== TVFIO DMESG (kernel messages during the tests) ===\n");
    fflush(stdout);
    dmesg(1, 0);
    printf("=== TVFIO DMESG END ===\n");
    fflush(stdout);
    finish();
    return 0;
}
