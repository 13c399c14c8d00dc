#ifndef __ASM_S390_BITSPERLONG_H
#define __ASM_S390_BITSPERLONG_H 
#define __BITS_PER_LONG 64
#include <asm-generic/bitsperlong.h>
#endif
