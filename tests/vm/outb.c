/*
 * tvfio-outb PORT VALUE: write one byte to an x86 I/O port.
 *
 * Used by the guest /init of tests/vm/run to report the test status through
 * QEMU's isa-debug-exit device. Busybox has no outb, and the stock Debian
 * kernel has no /dev/port (CONFIG_DEVPORT is off), but it allows ioperm(2).
 * Built by tests/vm/run as a static binary: gcc -static -Os.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT VALUE\n", argv[0]);
        return 2;
    }
    unsigned long port = strtoul(argv[1], NULL, 0);
    unsigned long value = strtoul(argv[2], NULL, 0);
    if (port > 0xffff || value > 0xff) {
        fprintf(stderr, "%s: port or value out of range\n", argv[0]);
        return 2;
    }
    if (ioperm(port, 1, 1) != 0) {
        perror("ioperm");
        return 1;
    }
    outb((unsigned char)value, (unsigned short)port);
    return 0;
}
