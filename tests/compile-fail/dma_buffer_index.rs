// Kernel rule: DMA memory can change under the program (the device writes
// it), so `DmaBuffer` cannot be indexed or sliced into `&[u8]`/`&mut [u8]`.
use typed_vfio::DmaBuffer;

pub fn clear_header(buffer: &mut DmaBuffer) {
    let header = &mut buffer[..64]; //~ ERROR E0608 DmaBuffer
    header.fill(0);
}
