// Kernel rule: the no-IOMMU model has no VFIO_IOMMU_MAP_DMA; user code cannot
// declare `NoIommu` a DMA-mapping model to unlock `map` (orphan rule: both
// the trait and the type are the crate's).
use typed_vfio::{DmaModel, NoIommu};

impl DmaModel for NoIommu {} //~ ERROR E0117 NoIommu
