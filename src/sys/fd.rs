//! Fd classes: which kind of VFIO object an fd is.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

macro_rules! fd_class {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// A borrowed fd tagged with its class. Tagging is safe: a wrong tag
        /// can only send a request to the wrong kind of object, and every
        /// request in [`ioctl`](super::ioctl) is `unsafe` with that in its
        /// contract.
        #[derive(Clone, Copy, Debug)]
        pub struct $name<'fd>(BorrowedFd<'fd>);

        impl<'fd> $name<'fd> {
            /// Tags `fd` as this class.
            pub fn new(fd: BorrowedFd<'fd>) -> Self {
                Self(fd)
            }

            /// The underlying borrowed fd.
            pub fn fd(self) -> BorrowedFd<'fd> {
                self.0
            }
        }

        impl AsFd for $name<'_> {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0
            }
        }

        impl AsRawFd for $name<'_> {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }
    };
}

fd_class!(
    /// A container fd: `/dev/vfio/vfio`.
    ContainerFd
);
fd_class!(
    /// A group fd: `/dev/vfio/N` or `/dev/vfio/noiommu-N`.
    GroupFd
);
fd_class!(
    /// A device fd: from `VFIO_GROUP_GET_DEVICE_FD`, or a cdev
    /// `/dev/vfio/devices/vfioN`.
    DeviceFd
);
fd_class!(
    /// An iommufd: `/dev/iommu`.
    IommufdFd
);
