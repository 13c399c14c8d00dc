// Control: a `DmaBuffer` is `Send`, so one thread at a time may own it; a
// buffer moved to a worker, filled there with volatile copies, and moved
// back, then mapped on a type1 container, must compile. Mapping guards end
// before the buffer is returned.
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

pub fn map_worker_buffer() -> Result<DmaBuffer, Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1>()?;
    let buffer = fill_on_worker(DmaBuffer::new(8192)?);
    let result: Result<u64, DmaError> = container
        .map(&buffer, 0x10_0000, DmaAccess::DeviceReads)
        .map(|mapping| mapping.iova());
    result?;
    let mut copy = [0u8; 16];
    buffer.read(0, &mut copy)?;
    Ok(buffer)
}
