// Kernel rule: an IOAS lives in its iommufd context: the `Ioas` borrows the
// `Iommufd`, which cannot be dropped first.
use typed_vfio::iommufd::Iommufd;

pub fn early_close(fd: Iommufd) {
    let ioas = fd.alloc_ioas().unwrap();
    drop(fd); //~ ERROR E0505 fd
    drop(ioas);
}
