// Control: every access to a `DmaBuffer` is a byte-sized atomic access, so a
// buffer is `Send` and `Sync`: it may be moved to a worker, filled there and
// moved back, then mapped on a type1 container; and one buffer may be read
// from two threads at once while it is mapped (a poller beside the owner).
// Mapping guards end before the buffer is returned.
use typed_vfio::{Container, DmaAccess, DmaBuffer, DmaError, Group, Type1};

pub fn fill_on_worker(buffer: DmaBuffer) -> DmaBuffer {
    std::thread::spawn(move || {
        buffer.fill(0xa5);
        buffer.write_u64(8, 0x1234).ok();
        buffer
    })
    .join()
    .expect("worker panicked")
}

pub fn poll_from_two_threads(buffer: &DmaBuffer) -> u32 {
    std::thread::scope(|s| {
        let poller = s.spawn(|| buffer.read_u32(0));
        let head = buffer.read_u32(4).unwrap_or(0);
        head + poller.join().ok().and_then(Result::ok).unwrap_or(0)
    })
}

pub fn map_worker_buffer() -> Result<DmaBuffer, Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1>()?;
    let buffer = fill_on_worker(DmaBuffer::new(8192)?);
    let result: Result<u32, DmaError> = container
        .map(&buffer, 0x10_0000, DmaAccess::DeviceReads)
        .map(|mapping| {
            let polled = poll_from_two_threads(&buffer);
            drop(mapping);
            polled
        });
    result?;
    let mut copy = [0u8; 16];
    buffer.read(0, &mut copy)?;
    Ok(buffer)
}
