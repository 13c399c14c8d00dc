// Kernel rule: DMA memory is accessed volatilely because the device writes
// it concurrently; two host threads must not access one buffer at once
// (their copies would race). `DmaBuffer` is `Send` but not `Sync`: a
// `&DmaBuffer` cannot be shared with another thread.
use typed_vfio::DmaBuffer;

pub fn poll_from_two_threads(buffer: &DmaBuffer) -> u32 {
    std::thread::scope(|s| {
        let poller = s.spawn(|| buffer.read_u32(0)); //~ ERROR E0277 DmaBuffer
        let head = buffer.read_u32(4).unwrap_or(0);
        head + poller.join().ok().and_then(Result::ok).unwrap_or(0)
    })
}
