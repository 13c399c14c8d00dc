// Kernel rule: the container's states are the kernel's (no group, groups
// without a model, one of the models the kernel implements); user code
// cannot add a state. `ContainerState` is sealed.
use typed_vfio::ContainerState;

pub struct Configured;

impl ContainerState for Configured {} //~ ERROR E0277 Sealed
