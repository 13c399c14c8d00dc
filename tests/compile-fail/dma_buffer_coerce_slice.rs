// Kernel rule: DMA memory can change under the program (the device writes
// it), so `&DmaBuffer` does not deref-coerce to `&[u8]`.
use typed_vfio::DmaBuffer;

fn parse_completion(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

pub fn completion_status(buffer: &DmaBuffer) -> u16 {
    parse_completion(buffer) //~ ERROR E0308 DmaBuffer
}
