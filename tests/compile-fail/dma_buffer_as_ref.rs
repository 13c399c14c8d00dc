// Kernel rule: DMA memory can change under the program (the device writes
// it), so `DmaBuffer` does not implement `AsRef<[u8]>` either.
use typed_vfio::DmaBuffer;

fn hexdump(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn dump(buffer: &DmaBuffer) -> String {
    hexdump(buffer) //~ ERROR E0277 AsRef
}
