//! Walking a VFIO capability chain in bytes the kernel returned.
//!
//! Info structs (`vfio_device_info`, `vfio_region_info`,
//! `vfio_iommu_type1_info`) may be followed by a chain of capabilities: each
//! starts with `vfio_info_cap_header { id, version, next }`, where `next` is
//! the offset of the following one from the start of the info struct, 0 at
//! the end. The bytes are untrusted: every header must lie inside the buffer,
//! past the fixed struct, and every `next` must move strictly forward (the
//! kernel appends capabilities in order), which makes the walk cycle-free
//! and bounded by the buffer's length.

use crate::sys::FromBytes;

use crate::sys::vfio_info_cap_header;

/// One capability: its id and its bytes (header included), up to the next
/// capability or the end of the buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cap<'a> {
    pub(crate) id: u16,
    pub(crate) bytes: &'a [u8],
}

impl<'a> Cap<'a> {
    /// Reads a `T` from the start of the capability (header included).
    pub(crate) fn read<T: FromBytes>(&self) -> Option<T> {
        T::read_from_prefix(self.bytes).ok().map(|(v, _)| v)
    }

    /// The bytes after the fixed part `T` of the capability.
    pub(crate) fn tail<T>(&self) -> &'a [u8] {
        self.bytes.get(size_of::<T>()..).unwrap_or(&[])
    }
}

/// Iterator over a capability chain; yields an error once and then stops.
#[derive(Debug)]
pub(crate) struct CapChain<'a> {
    buf: &'a [u8],
    next: usize,
    min: usize,
    done: bool,
}

/// Walks the chain starting at `first` in `buf`; `fixed` is the size of the
/// info struct the chain follows (no capability may start inside it).
pub(crate) fn chain(buf: &[u8], first: u32, fixed: usize) -> CapChain<'_> {
    CapChain {
        buf,
        next: first as usize,
        min: fixed,
        done: first == 0,
    }
}

impl<'a> Iterator for CapChain<'a> {
    type Item = Result<Cap<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let at = self.next;
        let fail = |me: &mut Self, what| {
            me.done = true;
            Some(Err(what))
        };
        if at < self.min {
            return fail(
                self,
                "capability offset inside the fixed struct or not moving forward",
            );
        }
        if !at.is_multiple_of(4) {
            return fail(self, "capability offset misaligned");
        }
        let Some(rest) = self.buf.get(at..) else {
            return fail(self, "capability offset past the end of the buffer");
        };
        let Ok((header, _)) = vfio_info_cap_header::read_from_prefix(rest) else {
            return fail(self, "capability header truncated");
        };
        let next = header.next as usize;
        // A bad `next` is reported by the following call (it fails the
        // forward or bounds check there); this capability then runs to the
        // end of the buffer.
        let end = if next > at && next <= self.buf.len() {
            next
        } else {
            self.buf.len()
        };
        self.done = next == 0;
        self.next = next;
        self.min = at + size_of::<vfio_info_cap_header>();
        Some(Ok(Cap {
            id: header.id,
            bytes: &self.buf[at..end],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_cap(buf: &mut [u8], at: usize, id: u16, next: u32) {
        buf[at..at + 2].copy_from_slice(&id.to_ne_bytes());
        buf[at + 2..at + 4].copy_from_slice(&1u16.to_ne_bytes());
        buf[at + 4..at + 8].copy_from_slice(&next.to_ne_bytes());
    }

    #[test]
    fn walks_a_forward_chain() {
        let mut buf = vec![0u8; 64];
        put_cap(&mut buf, 24, 1, 40);
        put_cap(&mut buf, 40, 3, 0);
        let caps: Vec<_> = chain(&buf, 24, 24).collect::<Result<_, _>>().unwrap();
        assert_eq!(caps.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(caps[0].bytes.len(), 16);
        assert_eq!(caps[1].bytes.len(), 24);
    }

    #[test]
    fn empty_chain() {
        assert_eq!(chain(&[0u8; 24], 0, 24).count(), 0);
    }

    #[test]
    fn rejects_cycles_backward_links_and_self_loops() {
        let mut buf = vec![0u8; 64];
        put_cap(&mut buf, 24, 1, 40);
        put_cap(&mut buf, 40, 2, 24); // back to the first
        let items: Vec<_> = chain(&buf, 24, 24).collect();
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());

        let mut buf = vec![0u8; 64];
        put_cap(&mut buf, 24, 1, 24); // self loop
        let items: Vec<_> = chain(&buf, 24, 24).collect();
        assert_eq!(items.len(), 2);
        assert!(items[1].is_err());
    }

    #[test]
    fn rejects_out_of_bounds_truncated_and_inside_struct() {
        let buf = vec![0u8; 30];
        assert!(chain(&buf, 28, 24).next().unwrap().is_err()); // truncated header
        assert!(chain(&buf, 200, 24).next().unwrap().is_err()); // past end
        assert!(chain(&buf, 8, 24).next().unwrap().is_err()); // inside the struct
        assert!(chain(&buf, 26, 24).next().unwrap().is_err()); // misaligned
        let mut buf = vec![0u8; 40];
        put_cap(&mut buf, 24, 1, 4096); // next past the end
        let items: Vec<_> = chain(&buf, 24, 24).collect();
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
    }

    #[test]
    fn any_bytes_terminate_without_panic() {
        // A small exhaustive-ish sweep: every `first` offset over patterned bytes.
        let mut buf = vec![0u8; 96];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        for first in 0..200u32 {
            let n = chain(&buf, first, 16).take(1000).count();
            assert!(n <= buf.len() / 8 + 1, "walk from {first} took {n} steps");
        }
    }
}
