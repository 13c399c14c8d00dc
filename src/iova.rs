//! An IOVA allocator over the IOMMU's usable ranges: a container's
//! ([`IommuInfo::iova_ranges`], the smallest IOMMU page) or an IOAS's
//! ([`IoasRanges`], its required alignment).
//!
//! First fit, by address; blocks are aligned to the page size and to the
//! alignment asked for, released blocks merge with their free neighbours and
//! are reused. Every failure is an [`IovaError`]; the arithmetic is checked
//! (a range may end at `u64::MAX`). The allocator hands out addresses only:
//! mapping them is [`Container::map`](crate::Container::map) or
//! [`Ioas::map`](crate::iommufd::Ioas::map) as usual.
//!
//! ```
//! use typed_vfio::iova::IovaAllocator;
//! use typed_vfio::{IovaRange, Type1v2, sim::Simulator};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::new();
//! let container = sim.open_container()?.attach(sim.open_group(1)?)?.set_iommu::<Type1v2>()?;
//! let mut iovas = IovaAllocator::for_container(&container.iommu_info()?)?;
//! let a = iovas.alloc(0x3000, 0x1000)?;
//! let b = iovas.alloc(0x20_0000, 0x20_0000)?; // a 2 MiB-aligned block
//! assert_eq!(b.iova() % 0x20_0000, 0);
//! assert!(b.iova() > a.iova());
//! iovas.release(a)?;
//! assert_eq!(iovas.alloc(0x1000, 0x1000)?.iova(), 0); // reused
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use thiserror::Error;

use crate::container::{IommuInfo, IovaRange};
use crate::iommufd::IoasRanges;

/// Why an allocation or a release failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IovaError {
    /// No free range holds a block of this size at this alignment.
    #[error("no free IOVA range holds {size:#x} bytes aligned to {align:#x}")]
    Exhausted {
        /// The size asked for (rounded up to the page size).
        size: u64,
        /// The alignment asked for (at least the page size).
        align: u64,
    },
    /// A size of 0, or one that does not round up to pages in 64 bits.
    #[error("an IOVA block of {size:#x} bytes cannot be allocated")]
    BadSize {
        /// The size asked for.
        size: u64,
    },
    /// An alignment that is not a power of two.
    #[error("alignment {align:#x} is not a power of two")]
    BadAlign {
        /// The alignment asked for.
        align: u64,
    },
    /// The page size (the IOMMU's smallest page, or the IOAS alignment) is
    /// not a power of two, or the IOMMU reports none.
    #[error("page size {page:#x} is not a power of two")]
    BadPage {
        /// The page size.
        page: u64,
    },
    /// The block was not allocated here (released twice, or another
    /// allocator's).
    #[error("IOVA block {iova:#x} (+{size:#x}) is not allocated here")]
    NotAllocated {
        /// Its IOVA.
        iova: u64,
        /// Its size.
        size: u64,
    },
}

/// An allocated IOVA range, `iova..iova + size`; give it back with
/// [`IovaAllocator::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an IOVA block is given back with IovaAllocator::release"]
pub struct IovaBlock {
    iova: u64,
    size: u64,
}

impl IovaBlock {
    /// The first IOVA.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The size in bytes (a multiple of the page size).
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// First-fit IOVA allocation over usable ranges.
#[derive(Clone, Debug)]
pub struct IovaAllocator {
    page: u64,
    /// Free ranges, `start -> last` (inclusive), disjoint, never adjacent.
    free: BTreeMap<u64, u64>,
    /// Allocated blocks, `iova -> size`.
    used: BTreeMap<u64, u64>,
}

impl IovaAllocator {
    /// Over `ranges` (inclusive ends, as the kernel reports them), in pages
    /// of `page` bytes: each range is trimmed inward to whole pages; ranges
    /// may overlap or come in any order.
    pub fn new(ranges: &[IovaRange], page: u64) -> Result<IovaAllocator, IovaError> {
        if !page.is_power_of_two() {
            return Err(IovaError::BadPage { page });
        }
        let mut a = IovaAllocator {
            page,
            free: BTreeMap::new(),
            used: BTreeMap::new(),
        };
        // In 128 bits: a range may end at u64::MAX, one past it is 2^64.
        let p = u128::from(page);
        for r in ranges {
            let start = u128::from(r.start).next_multiple_of(p);
            let end = (u128::from(r.end) + 1) / p * p;
            if start < end {
                // Both fit 64 bits: start < end <= 2^64.
                a.insert_free(start as u64, (end - 1) as u64);
            }
        }
        Ok(a)
    }

    /// Over a type1 container's usable ranges, in its smallest IOMMU page
    /// (with no ranges reported, the whole 64-bit space).
    pub fn for_container(info: &IommuInfo) -> Result<IovaAllocator, IovaError> {
        let page = info.page_sizes & info.page_sizes.wrapping_neg();
        let all = [IovaRange {
            start: 0,
            end: u64::MAX,
        }];
        let ranges = if info.iova_ranges.is_empty() {
            &all[..]
        } else {
            &info.iova_ranges
        };
        Self::new(ranges, page)
    }

    /// Over an IOAS's allowed ranges, in its required alignment (at least 4
    /// KiB).
    pub fn for_ioas(ranges: &IoasRanges) -> Result<IovaAllocator, IovaError> {
        Self::new(&ranges.ranges, ranges.alignment.max(4096))
    }

    /// The page size blocks are made of.
    pub fn page_size(&self) -> u64 {
        self.page
    }

    /// The free bytes, in all.
    pub fn free_bytes(&self) -> u128 {
        self.free.iter().map(|(&s, &l)| u128::from(l - s) + 1).sum()
    }

    /// A block of at least `size` bytes (rounded up to whole pages) at an
    /// IOVA aligned to `align` (a power of two; at least the page size), the
    /// lowest that fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<IovaBlock, IovaError> {
        if !align.is_power_of_two() {
            return Err(IovaError::BadAlign { align });
        }
        let align = align.max(self.page);
        let size = size
            .checked_next_multiple_of(self.page)
            .filter(|&s| s > 0)
            .ok_or(IovaError::BadSize { size })?;
        let found = self.free.iter().find_map(|(&start, &last)| {
            let at = start.checked_next_multiple_of(align)?;
            let end = at.checked_add(size - 1)?;
            (end <= last).then_some((start, last, at, end))
        });
        let Some((start, last, at, end)) = found else {
            return Err(IovaError::Exhausted { size, align });
        };
        self.free.remove(&start);
        if start < at {
            self.free.insert(start, at - 1);
        }
        if end < last {
            self.free.insert(end + 1, last);
        }
        self.used.insert(at, size);
        Ok(IovaBlock { iova: at, size })
    }

    /// Gives a block back; it merges with free neighbours.
    pub fn release(&mut self, block: IovaBlock) -> Result<(), IovaError> {
        match self.used.get(&block.iova) {
            Some(&size) if size == block.size => {
                self.used.remove(&block.iova);
                self.insert_free(block.iova, block.iova + (block.size - 1));
                Ok(())
            }
            _ => Err(IovaError::NotAllocated {
                iova: block.iova,
                size: block.size,
            }),
        }
    }

    /// Adds `start..=last` to the free ranges, merging what it overlaps or
    /// touches.
    fn insert_free(&mut self, mut start: u64, mut last: u64) {
        // A free range starting at or before `start` that reaches it.
        if let Some((&s, &l)) = self.free.range(..=start).next_back()
            && l.checked_add(1).is_none_or(|next| next >= start)
        {
            start = s;
            last = last.max(l);
            self.free.remove(&s);
        }
        // Ranges starting inside (or just after) the new one.
        while let Some((&s, &l)) = self
            .free
            .range(start..)
            .next()
            .filter(|&(&s, _)| last.checked_add(1).is_none_or(|next| s <= next))
        {
            last = last.max(l);
            self.free.remove(&s);
        }
        self.free.insert(start, last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> IovaRange {
        IovaRange { start, end }
    }

    #[test]
    fn ranges_are_trimmed_to_whole_pages() {
        let a =
            IovaAllocator::new(&[range(0x1001, 0x4fff), range(0x6000, 0x6ffe)], 0x1000).unwrap();
        // 0x2000..=0x4fff: three pages; 0x6000..=0x6ffe holds no whole page.
        assert_eq!(a.free_bytes(), 0x3000);
        let full = IovaAllocator::new(&[range(0, u64::MAX)], 0x1000).unwrap();
        assert_eq!(full.free_bytes(), 1u128 << 64);
        assert!(IovaAllocator::new(&[], 0x1800).is_err());
    }

    #[test]
    fn first_fit_alignment_release_and_merge() {
        let mut a = IovaAllocator::new(
            &[range(0, 0xfedf_ffff), range(0xfef0_0000, 0xffff_ffff)],
            0x1000,
        )
        .unwrap();
        let x = a.alloc(1, 1).unwrap();
        assert_eq!((x.iova(), x.size()), (0, 0x1000));
        let y = a.alloc(0x1000, 0x20_0000).unwrap();
        assert_eq!(y.iova(), 0x20_0000);
        let z = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(
            z.iova(),
            0x1000,
            "the gap before the aligned block is reused"
        );
        // Nothing crosses the hole at 0xfee00000..=0xfeefffff.
        let big = a.alloc(0x20_0000, 0x10_0000).unwrap();
        assert_eq!(big.iova(), 0x30_0000);
        a.release(z).unwrap();
        a.release(x).unwrap();
        assert_eq!(
            a.release(IovaBlock {
                iova: 0,
                size: 0x1000
            }),
            Err(IovaError::NotAllocated {
                iova: 0,
                size: 0x1000
            })
        );
        a.release(y).unwrap();
        a.release(big).unwrap();
        assert_eq!(a.free_bytes(), 0x1_0000_0000 - 0x10_0000);
        assert_eq!(
            a.free.len(),
            2,
            "everything merged back into the two ranges"
        );
        assert!(matches!(a.alloc(0, 1), Err(IovaError::BadSize { .. })));
        assert!(matches!(
            a.alloc(u64::MAX, 1),
            Err(IovaError::BadSize { .. })
        ));
        assert!(matches!(a.alloc(1, 3), Err(IovaError::BadAlign { .. })));
        assert!(matches!(
            a.alloc(0x1_0000_0000, 1),
            Err(IovaError::Exhausted { .. })
        ));
    }

    #[test]
    fn a_range_ending_at_the_top_of_the_space() {
        let mut a = IovaAllocator::new(&[range(u64::MAX - 0x2fff, u64::MAX)], 0x1000).unwrap();
        let x = a.alloc(0x3000, 0x1000).unwrap();
        assert_eq!(x.iova(), u64::MAX - 0x2fff);
        assert!(a.alloc(1, 1).is_err());
        a.release(x).unwrap();
        assert_eq!(a.free_bytes(), 0x3000);
    }

    #[test]
    fn against_a_page_model() {
        // 64 pages in three ranges; a pseudo-random sequence of allocations
        // and releases, each checked against a page bitmap.
        let ranges = [
            range(0, 0x7fff),
            range(0x10000, 0x2ffff),
            range(0x38000, 0x47fff),
        ];
        let mut a = IovaAllocator::new(&ranges, 0x1000).unwrap();
        let usable = |p: u64| ranges.iter().any(|r| r.contains(p * 0x1000, 0x1000));
        let mut taken = [false; 0x48];
        let mut live: Vec<IovaBlock> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(3) && !live.is_empty() {
                let b = live.swap_remove((seed >> 8) as usize % live.len());
                for p in b.iova() / 0x1000..(b.iova() + b.size()) / 0x1000 {
                    taken[p as usize] = false;
                }
                a.release(b).unwrap();
                continue;
            }
            let pages = 1 + (seed >> 16) % 6;
            let align = 0x1000u64 << ((seed >> 24) % 3);
            // The model's first fit.
            let want = (0..0x48u64)
                .step_by((align / 0x1000) as usize)
                .find(|&p| (p..p + pages).all(|q| q < 0x48 && usable(q) && !taken[q as usize]));
            match (a.alloc(pages * 0x1000, align), want) {
                (Ok(b), Some(p)) => {
                    assert_eq!(b.iova(), p * 0x1000);
                    for q in p..p + pages {
                        taken[q as usize] = true;
                    }
                    live.push(b);
                }
                (Err(IovaError::Exhausted { .. }), None) => {}
                (got, want) => panic!("allocator {got:?}, model {want:?}"),
            }
            let free = (0..0x48u64)
                .filter(|&p| usable(p) && !taken[p as usize])
                .count();
            assert_eq!(a.free_bytes(), free as u128 * 0x1000);
        }
    }
}
