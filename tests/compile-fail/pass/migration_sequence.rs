// The migration states used as the kernel allows: pre-copy rounds, STOP_COPY,
// STOP, and a resume.
use typed_vfio::Device;
use typed_vfio::migration::{
    Current, PreCopy, PreCopyP2p, PreCopyRead, Resuming, Running, Stop, StopCopy, WithP2pPreCopy,
};

pub fn save(device: &Device) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let m = device.migration::<WithP2pPreCopy>()?;
    let mut pre = m.to::<PreCopy>().map_err(|e| e.error)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let PreCopyRead::Data(n) = pre.read(&mut buf)? {
        out.extend_from_slice(&buf[..n]);
    }
    let _info = pre.precopy_info()?;
    let pre = pre.to::<PreCopyP2p>().map_err(|e| e.error)?;
    let mut sc = pre.to::<StopCopy>().map_err(|e| e.error)?;
    out.extend(sc.read_to_end(1 << 20)?);
    let _stopped = sc.to::<Stop>().map_err(|e| e.error)?;
    Ok(out)
}

pub fn resume(device: &Device, stream: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let mut r = device.migration::<WithP2pPreCopy>()?.to::<Resuming>().map_err(|e| e.error)?;
    r.write_all(stream)?;
    match r.to::<Running>() {
        Ok(_running) => Ok(()),
        Err(e) => match e.now {
            Current::Error(handle) => {
                let _running = handle.reset().map_err(|e| e.error)?;
                Err(e.error.into())
            }
            _ => Err(e.error.into()),
        },
    }
}
