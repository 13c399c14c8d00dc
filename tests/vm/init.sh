#!/bin/sh
# Guest /init for tests/vm/run (busybox sh, PID 1 inside the QEMU guest).
#
# 1. mounts proc, sysfs, devtmpfs; loads the VFIO modules listed in
#    /lib/modules/load-order (stock kernel only; the custom kernel has VFIO
#    built in and no such file);
# 2. binds every QEMU edu device (1234:11e8) to vfio-pci;
# 3. exports TVFIO_CONFIG, TVFIO_IOMMU, TVFIO_COMPAT, TVFIO_DEVICES, TVFIO_GROUPS and runs
#    /vm_guest --ignored --test-threads=1 --nocapture [--skip S...] [FILTER];
# 4. reports the exit status through isa-debug-exit (port 0xf4) and powers off.
#
# Settings come from the kernel command line: tvfio.config=NAME,
# tvfio.iommu=type1|type1v2|noiommu|iommufd, tvfio.compat=1 (optional: the
# container is iommufd's compatibility container), tvfio.filter=SUBSTRING (optional),
# tvfio.skip=S1,S2 (optional: libtest --skip filters for this configuration).
# The host (tests/vm/run) reads the serial log: keep the marker lines stable.

export PATH=/bin:/sbin
# The aarch64 initramfs links only /bin/sh to busybox (the host cannot list
# an arm64 busybox's applets): install the other links here.
[ -e /bin/mount ] || /bin/busybox --install -s /bin
export HOME=/root
export TMPDIR=/tmp
export RUST_BACKTRACE=1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

log() { echo "tvfio-init: $*"; }

# Tell QEMU the status (isa-debug-exit: QEMU exits with (status << 1) | 1),
# then power off in case the port write did not end the VM.
finish() {
    st=$1
    if [ "$(uname -m)" = aarch64 ]; then
        # QEMU's virt machine has no isa-debug-exit: power off (PSCI, QEMU
        # exits 0); the host reads the status from the end marker.
        poweroff -f
        sleep 5
    fi
    byte=$((st & 255))
    if [ "$st" -ne 0 ] && [ "$byte" -eq 0 ]; then byte=1; fi
    if ! /bin/tvfio-outb 0xf4 "$byte" 2>/dev/null; then
        if [ -c /dev/port ]; then
            # shellcheck disable=SC2059
            printf "\\$(printf %03o "$byte")" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
        fi
    fi
    log "isa-debug-exit did not stop the VM; powering off"
    poweroff -f
    reboot -f
    sleep 5
}

cmdline=$(cat /proc/cmdline)
param() {
    for w in $cmdline; do
        case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}
TVFIO_CONFIG=$(param tvfio.config || echo unknown)
TVFIO_IOMMU=$(param tvfio.iommu || echo unknown)
# tvfio.compat=1: /dev/vfio/vfio is iommufd's VFIO compatibility container
# (the compat kernel); the tests expect its answers where it differs.
TVFIO_COMPAT=$(param tvfio.compat || echo 0)
filter=$(param tvfio.filter || true)
# tvfio.skip=A,B: tests of other configurations, passed as --skip A --skip B
skip=$(param tvfio.skip || true)
set --
for s in $(echo "$skip" | tr ',' ' '); do
    set -- "$@" --skip "$s"
done

log "config=$TVFIO_CONFIG iommu=$TVFIO_IOMMU compat=$TVFIO_COMPAT kernel=$(uname -r)"

# --- modules (stock kernel) -------------------------------------------------
setup_ok=1
if [ -f /lib/modules/load-order ]; then
    while read -r m; do
        [ -n "$m" ] || continue
        if insmod "/lib/modules/$m.ko"; then
            log "insmod $m"
        else
            log "ERROR: insmod $m failed"
            setup_ok=0
        fi
    done < /lib/modules/load-order
fi

# --- bind devices to vfio-pci -------------------------------------------------
# with_ids VENDOR DEVICE: the PCI addresses of the devices with these ids.
with_ids() {
    for d in /sys/bus/pci/devices/*; do
        [ -f "$d/vendor" ] || continue
        [ "$(cat "$d/vendor")" = "$1" ] || continue
        [ "$(cat "$d/device")" = "$2" ] || continue
        echo "${d##*/}"
    done
}
# bind_vfio BDF: hands the device to vfio-pci (from its driver, if any).
bind_vfio() {
    d=/sys/bus/pci/devices/$1
    if [ -e "$d/driver" ]; then
        echo "$1" > "$d/driver/unbind"
    fi
    echo vfio-pci > "$d/driver_override"
    echo "$1" > /sys/bus/pci/drivers_probe
}
# driver_of BDF, group_of BDF: the name of its driver / IOMMU group, or "".
driver_of() {
    d=/sys/bus/pci/devices/$1
    if [ -e "$d/driver" ]; then basename "$(readlink "$d/driver")"; fi
}
group_of() {
    d=/sys/bus/pci/devices/$1
    if [ -e "$d/iommu_group" ]; then basename "$(readlink "$d/iommu_group")"; fi
}

# The edu devices.
devices=""
groups=""
for bdf in $(with_ids 0x1234 0x11e8); do
    bind_vfio "$bdf"
    drv=$(driver_of "$bdf")
    grp=$(group_of "$bdf")
    if [ -n "$grp" ] && [ -e "/dev/vfio/noiommu-$grp" ]; then grp="noiommu-$grp"; fi
    log "edu $bdf driver=${drv:-none} group=${grp:-none}"
    if [ "$drv" != vfio-pci ] || [ -z "$grp" ]; then
        log "ERROR: could not bind $bdf to vfio-pci"
        setup_ok=0
    fi
    devices="$devices $bdf"
    groups="$groups ${grp:-none}"
done
devices=${devices# }
groups=${groups# }
[ -n "$devices" ] || { log "ERROR: no edu device (1234:11e8) found"; setup_ok=0; }

# A group that is not viable: a pci-testdev (1b36:0005, bound to vfio-pci
# here) and a virtio-rng (left to virtio-pci) are functions 0 and 1 of one
# slot behind one root port, so they share one IOMMU group.
nonviable=""
for bdf in $(with_ids 0x1b36 0x0005); do
    mate=${bdf%.*}.1
    bind_vfio "$bdf"
    drv=$(driver_of "$bdf")
    mdrv=$(driver_of "$mate")
    g=$(group_of "$bdf")
    mg=$(group_of "$mate")
    log "pci-testdev $bdf driver=${drv:-none} group=${g:-none}; $mate driver=${mdrv:-none} group=${mg:-none}"
    if [ "$drv" != vfio-pci ] || [ -z "$mdrv" ]; then
        log "ERROR: the non-viable group is not set up"
        setup_ok=0
    fi
    nonviable="$bdf $mate"
done
[ -n "$nonviable" ] || { log "ERROR: no pci-testdev (1b36:0005) found"; setup_ok=0; }

# QEMU's nvme (1b36:0010), when the machine has one, bound last (so that
# the no-IOMMU group numbers of the devices above do not move):
# TVFIO_LE_DEVICE="<address> <group>" (the nvme:: driver tests; the
# PowerPC guests' /init, init-static.c, exports the same).
le_device=""
for bdf in $(with_ids 0x1b36 0x0010); do
    bind_vfio "$bdf"
    drv=$(driver_of "$bdf")
    grp=$(group_of "$bdf")
    if [ -n "$grp" ] && [ -e "/dev/vfio/noiommu-$grp" ]; then grp="noiommu-$grp"; fi
    log "nvme $bdf driver=${drv:-none} group=${grp:-none}"
    if [ "$drv" != vfio-pci ] || [ -z "$grp" ]; then
        log "ERROR: could not bind the nvme $bdf to vfio-pci"
        setup_ok=0
    fi
    le_device="$bdf $grp"
done
export TVFIO_LE_DEVICE="$le_device"
log "TVFIO_LE_DEVICE=$TVFIO_LE_DEVICE"

log "/dev/vfio:"
ls -l /dev/vfio 2>&1
if [ -d /dev/vfio/devices ]; then
    log "/dev/vfio/devices:"
    ls -l /dev/vfio/devices 2>&1
fi
[ -c /dev/iommu ] && log "/dev/iommu present (iommufd)"
[ "$setup_ok" = 1 ] || log "ERROR: setup incomplete, running the tests anyway"

export TVFIO_CONFIG TVFIO_IOMMU TVFIO_COMPAT
export TVFIO_DEVICES="$devices"
export TVFIO_GROUPS="$groups"
export TVFIO_NONVIABLE="$nonviable"
log "TVFIO_CONFIG=$TVFIO_CONFIG"
log "TVFIO_IOMMU=$TVFIO_IOMMU"
log "TVFIO_COMPAT=$TVFIO_COMPAT"
log "TVFIO_DEVICES=$TVFIO_DEVICES"
log "TVFIO_GROUPS=$TVFIO_GROUPS"
log "TVFIO_NONVIABLE=$TVFIO_NONVIABLE"

# Keep kernel messages off the console while the tests run (they would break
# up libtest's "test NAME ... ok" lines); they are printed after the tests.
dmesg -c > /dev/null
dmesg -n 1

[ $# -gt 0 ] && log "not run here (libtest --skip): $skip"
echo "=== TVFIO BEGIN config=$TVFIO_CONFIG ==="
if [ -n "$filter" ]; then
    /vm_guest --ignored --test-threads=1 --nocapture "$@" "$filter"
else
    /vm_guest --ignored --test-threads=1 --nocapture "$@"
fi
status=$?
echo "=== TVFIO END config=$TVFIO_CONFIG status=$status ==="

# tvfio.tour=1: the README's tour (examples/tour.rs) on the first real edu
# device, after the tests and only on a full run (no filter).
if [ "$(param tvfio.tour || true)" = 1 ] && [ -z "$filter" ]; then
    echo "=== TVFIO TOUR BEGIN ==="
    /tour ${TVFIO_DEVICES%% *}
    echo "=== TVFIO TOUR END status=$? ==="
fi

# tvfio.lsvfio=1: the inspector (examples/lsvfio.rs) on the first edu device,
# as root and then as the unprivileged user nobody (whose group nodes are
# root's: it must say "permission denied"), full runs only. tests/vm/run
# checks the output.
if [ "$(param tvfio.lsvfio || true)" = 1 ] && [ -z "$filter" ]; then
    echo "=== TVFIO LSVFIO BEGIN ==="
    /lsvfio ${TVFIO_DEVICES%% *}
    echo "=== TVFIO LSVFIO status=$? ==="
    echo "=== TVFIO LSVFIO USER ==="
    mkdir -p /etc
    echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd
    echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> /etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' > /etc/group
    su -s /bin/sh nobody -c "/lsvfio ${TVFIO_DEVICES%% *}" 2>&1
    echo "=== TVFIO LSVFIO USER status=$? ==="
    echo "=== TVFIO LSVFIO END ==="
fi

# tvfio.bench=1: the in-guest benchmark (benches/guest/), after the tests
# and only on a full run (no filter).
if [ "$(param tvfio.bench || true)" = 1 ] && [ -z "$filter" ]; then
    echo "=== TVFIO BENCH BEGIN ==="
    /guest_bench
    echo "=== TVFIO BENCH END status=$? ==="
fi

# tvfio.nvmebench=1: the NVMe benchmark (benches/guest/nvme.rs: the
# user-space driver against the kernel's nvme driver on the same device),
# after the tests and only on a full run.
if [ "$(param tvfio.nvmebench || true)" = 1 ] && [ -z "$filter" ]; then
    echo "=== TVFIO NVMEBENCH BEGIN ==="
    /guest_bench nvme
    echo "=== TVFIO NVMEBENCH END status=$? ==="
fi

echo "=== TVFIO DMESG (kernel messages during the tests) ==="
dmesg
echo "=== TVFIO DMESG END ==="

finish "$status"
