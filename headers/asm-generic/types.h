#ifndef _ASM_GENERIC_TYPES_H
#define _ASM_GENERIC_TYPES_H 
#include <asm-generic/int-ll64.h>
#endif
