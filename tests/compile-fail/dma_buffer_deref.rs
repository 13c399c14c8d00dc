// Kernel rule: DMA memory can change under the program (the device writes
// it), so `DmaBuffer` does not implement `Deref<Target = [u8]>`: it cannot
// be dereferenced into a byte slice.
use typed_vfio::DmaBuffer;

pub fn first_byte(buffer: &DmaBuffer) -> u8 {
    let bytes: &[u8] = &**buffer; //~ ERROR E0614 DmaBuffer
    bytes[0]
}
