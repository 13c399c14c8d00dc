/* typed-vfio: everything build.rs hands to bindgen, and the ABI oracle compiles. */
#include "linux/vfio.h"
#include "linux/iommufd.h"
#include "vfio_type2.h"
