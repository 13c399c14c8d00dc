//! Migration v2 on a simulated edu: the VFIO core's state machine (the
//! uapi's arcs and its combined transitions, as `vfio_mig_get_next_state`
//! walks them) and a driver that saves and restores edu's registers and DMA
//! buffer through a data file.
//!
//! The stream is the simulator's own: records of a tag byte, a
//! little-endian `u32` length and the payload. PRE_COPY produces the DMA
//! buffer record; STOP_COPY adds the registers record (after the buffer
//! when it starts from STOP). Resuming accepts at most [`RESUME_LIMIT`]
//! bytes (`ENOMEM` past it) and loads them on RESUMING → STOP, refusing a
//! stream that does not parse (`EINVAL`, the device stays RESUMING).

use nix::errno::Errno;

use super::edu::{DMA_BUF_SIZE, Edu};
use crate::sys;

const STOP: u32 = sys::VFIO_DEVICE_STATE_STOP;
const RUNNING: u32 = sys::VFIO_DEVICE_STATE_RUNNING;
const STOP_COPY: u32 = sys::VFIO_DEVICE_STATE_STOP_COPY;
const RESUMING: u32 = sys::VFIO_DEVICE_STATE_RESUMING;
const RUNNING_P2P: u32 = sys::VFIO_DEVICE_STATE_RUNNING_P2P;
const PRE_COPY: u32 = sys::VFIO_DEVICE_STATE_PRE_COPY;
const PRE_COPY_P2P: u32 = sys::VFIO_DEVICE_STATE_PRE_COPY_P2P;
const ERROR: u32 = sys::VFIO_DEVICE_STATE_ERROR;

/// The most a resume stream may hold.
pub(crate) const RESUME_LIMIT: usize = 64 * 1024;

const TAG_BUFFER: u8 = 1;
const TAG_REGS: u8 = 2;
const REGS_LEN: usize = 16;

/// The `VFIO_MIGRATION_*` flags a state needs; `None` for a value that is
/// no state.
fn needs(state: u32) -> Option<u32> {
    let sc = sys::VFIO_MIGRATION_STOP_COPY;
    Some(match state {
        STOP | RUNNING | STOP_COPY | RESUMING => sc,
        RUNNING_P2P => sc | sys::VFIO_MIGRATION_P2P,
        PRE_COPY => sc | sys::VFIO_MIGRATION_PRE_COPY,
        PRE_COPY_P2P => sc | sys::VFIO_MIGRATION_P2P | sys::VFIO_MIGRATION_PRE_COPY,
        ERROR => u32::MAX,
        _ => return None,
    })
}

fn supported(flags: u32, state: u32) -> bool {
    needs(state).is_some_and(|n| n & flags == n)
}

/// The full state machine's next step from `cur` towards `new` (every
/// optional state present): the uapi's preferred paths.
fn full_step(cur: u32, new: u32) -> u32 {
    if cur == new {
        return cur;
    }
    match (cur, new) {
        (ERROR, _) | (_, ERROR) => ERROR,
        (STOP, STOP_COPY | RESUMING) => new,
        (STOP, _) => RUNNING_P2P,
        (RUNNING, PRE_COPY) => PRE_COPY,
        (RUNNING, _) => RUNNING_P2P,
        (PRE_COPY, PRE_COPY_P2P | STOP_COPY) => PRE_COPY_P2P,
        (PRE_COPY, _) => RUNNING,
        (PRE_COPY_P2P, PRE_COPY | STOP_COPY) => new,
        (PRE_COPY_P2P, _) => RUNNING_P2P,
        (STOP_COPY, PRE_COPY | PRE_COPY_P2P) => ERROR,
        (STOP_COPY, _) => STOP,
        (RESUMING, _) => STOP,
        (RUNNING_P2P, STOP | RUNNING | PRE_COPY_P2P) => new,
        (RUNNING_P2P, PRE_COPY) => RUNNING,
        (RUNNING_P2P, _) => STOP,
        _ => ERROR,
    }
}

/// The next step from `cur` towards `new` on a device with `flags`,
/// skipping the states it lacks; `None` when the kernel refuses the
/// transition (`EINVAL`).
pub(crate) fn next_step(flags: u32, cur: u32, new: u32) -> Option<u32> {
    if !supported(flags, cur) || !supported(flags, new) {
        return None;
    }
    let mut next = full_step(cur, new);
    // Bounded: each skip moves along a path of at most seven states.
    for _ in 0..8 {
        if next == ERROR {
            return None;
        }
        if supported(flags, next) {
            return Some(next);
        }
        next = full_step(next, new);
    }
    None
}

/// The open data file.
#[derive(Debug)]
pub(crate) enum MigFile {
    /// A saving stream: bytes produced, bytes read, and whether the final
    /// (STOP_COPY) part is in.
    Save {
        data: Vec<u8>,
        pos: usize,
        complete: bool,
    },
    /// A resume stream: the bytes written.
    Resume { data: Vec<u8> },
}

/// A migratable device's migration state.
#[derive(Debug)]
pub(crate) struct MigDevice {
    pub(crate) flags: u32,
    pub(crate) state: u32,
    /// The live data file and its generation: a file object of an older
    /// generation is disabled (`ENODEV`).
    pub(crate) file: Option<(u64, MigFile)>,
    pub(crate) generation: u64,
}

fn record(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

fn buffer_record(edu: &Edu, out: &mut Vec<u8>) {
    record(out, TAG_BUFFER, &edu.buf[..]);
}

fn regs_record(edu: &Edu, out: &mut Vec<u8>) {
    let mut regs = [0u8; REGS_LEN];
    for (slot, v) in regs.chunks_exact_mut(4).zip(edu.saved_regs()) {
        slot.copy_from_slice(&v.to_le_bytes());
    }
    record(out, TAG_REGS, &regs);
}

/// Parses a resume stream into edu, all or nothing.
fn load(edu: &mut Edu, mut data: &[u8]) -> Result<(), Errno> {
    let mut buffer = None;
    let mut regs = None;
    while !data.is_empty() {
        let (&tag, rest) = data.split_first().ok_or(Errno::EINVAL)?;
        let len = rest.get(..4).ok_or(Errno::EINVAL)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let payload = rest.get(4..4usize.checked_add(len).ok_or(Errno::EINVAL)?);
        let payload = payload.ok_or(Errno::EINVAL)?;
        match tag {
            TAG_BUFFER if len == DMA_BUF_SIZE && buffer.is_none() => buffer = Some(payload),
            TAG_REGS if len == REGS_LEN && regs.is_none() => regs = Some(payload),
            _ => return Err(Errno::EINVAL),
        }
        data = &rest[4 + len..];
    }
    let regs = regs.ok_or(Errno::EINVAL)?;
    let mut words = [0u32; 4];
    for (w, b) in words.iter_mut().zip(regs.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    edu.load_regs(words);
    if let Some(buffer) = buffer {
        edu.buf.copy_from_slice(buffer);
    }
    Ok(())
}

impl MigDevice {
    pub(crate) fn new(flags: u32) -> Self {
        MigDevice {
            flags,
            state: RUNNING,
            file: None,
            generation: 0,
        }
    }

    /// Back to RUNNING with every file disabled (open, reset).
    pub(crate) fn reset(&mut self) {
        self.state = RUNNING;
        self.file = None;
    }

    /// The bytes STOP_COPY would produce (`MIG_DATA_SIZE`).
    pub(crate) fn stop_copy_size(&self) -> u64 {
        (5 + DMA_BUF_SIZE + 5 + REGS_LEN) as u64
    }

    fn new_file(&mut self, file: MigFile) -> u64 {
        self.generation += 1;
        self.file = Some((self.generation, file));
        self.generation
    }

    /// One arc of the driver: the generation of a new data file, if the
    /// arc makes one.
    fn step(&mut self, edu: &mut Edu, next: u32) -> Result<Option<u64>, Errno> {
        let cur = self.state;
        Ok(match (cur, next) {
            (RUNNING, PRE_COPY) | (RUNNING_P2P, PRE_COPY_P2P) => {
                let mut data = Vec::new();
                buffer_record(edu, &mut data);
                Some(self.new_file(MigFile::Save {
                    data,
                    pos: 0,
                    complete: false,
                }))
            }
            (STOP, STOP_COPY) => {
                let mut data = Vec::new();
                buffer_record(edu, &mut data);
                regs_record(edu, &mut data);
                Some(self.new_file(MigFile::Save {
                    data,
                    pos: 0,
                    complete: true,
                }))
            }
            (PRE_COPY | PRE_COPY_P2P, STOP_COPY) => {
                // The pre-copy stream goes on with the final part.
                match &mut self.file {
                    Some((_, MigFile::Save { data, complete, .. })) => {
                        regs_record(edu, data);
                        *complete = true;
                    }
                    _ => return Err(Errno::EINVAL),
                }
                None
            }
            (STOP, RESUMING) => Some(self.new_file(MigFile::Resume { data: Vec::new() })),
            (RESUMING, STOP) => {
                match &self.file {
                    Some((_, MigFile::Resume { data })) => load(edu, data)?,
                    _ => return Err(Errno::EINVAL),
                }
                self.file = None;
                None
            }
            (PRE_COPY, RUNNING) | (PRE_COPY_P2P, RUNNING_P2P) | (STOP_COPY, STOP) => {
                self.file = None;
                None
            }
            _ => None,
        })
    }

    /// `SET` of `new`: walks the steps; the generation of the data file the
    /// transition returns, if any. On failure the device stays where the
    /// failing step found it, except that a step `fail` fails (an injected
    /// driver failure) leaves it in ERROR, as the uapi allows.
    pub(crate) fn set_state(
        &mut self,
        edu: &mut Edu,
        new: u32,
        fail: &mut dyn FnMut() -> Result<(), Errno>,
    ) -> Result<Option<u64>, Errno> {
        let mut made = None;
        for _ in 0..8 {
            if self.state == new {
                return Ok(made);
            }
            let next = next_step(self.flags, self.state, new).ok_or(Errno::EINVAL)?;
            if let Err(errno) = fail() {
                self.state = ERROR;
                self.file = None;
                return Err(errno);
            }
            made = self.step(edu, next)?;
            self.state = next;
            if made.is_some() && next != new {
                return Err(Errno::EINVAL);
            }
        }
        Err(Errno::EINVAL)
    }

    /// `read(2)` of the file of generation `generation`.
    pub(crate) fn read(&mut self, generation: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        match &mut self.file {
            Some((
                g,
                MigFile::Save {
                    data,
                    pos,
                    complete,
                },
            )) if *g == generation => {
                let rest = data.get(*pos..).unwrap_or_default();
                if rest.is_empty() {
                    // PRE_COPY's temporary end of stream is ENOMSG; the
                    // complete stream's end is EOF.
                    return if *complete { Ok(0) } else { Err(Errno::ENOMSG) };
                }
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *pos += n;
                Ok(n)
            }
            Some((g, MigFile::Resume { .. })) if *g == generation => Err(Errno::EINVAL),
            _ => Err(Errno::ENODEV),
        }
    }

    /// `write(2)` of the file of generation `generation`.
    pub(crate) fn write(&mut self, generation: u64, buf: &[u8]) -> Result<usize, Errno> {
        match &mut self.file {
            Some((g, MigFile::Resume { data })) if *g == generation => {
                if data.len().saturating_add(buf.len()) > RESUME_LIMIT {
                    return Err(Errno::ENOMEM);
                }
                data.extend_from_slice(buf);
                Ok(buf.len())
            }
            Some((g, MigFile::Save { .. })) if *g == generation => Err(Errno::EINVAL),
            _ => Err(Errno::ENODEV),
        }
    }

    /// `VFIO_MIG_GET_PRECOPY_INFO`: (initial bytes, dirty bytes); only in
    /// the pre-copy states.
    pub(crate) fn precopy_info(&self, generation: u64) -> Result<(u64, u64), Errno> {
        if self.state != PRE_COPY && self.state != PRE_COPY_P2P {
            return Err(Errno::EINVAL);
        }
        match &self.file {
            Some((g, MigFile::Save { data, pos, .. })) if *g == generation => {
                Ok(((data.len().saturating_sub(*pos)) as u64, 0))
            }
            Some((g, _)) if *g == generation => Err(Errno::EINVAL),
            _ => Err(Errno::ENODEV),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u32 =
        sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_P2P | sys::VFIO_MIGRATION_PRE_COPY;
    const STATES: [u32; 7] = [
        STOP,
        RUNNING,
        STOP_COPY,
        RESUMING,
        RUNNING_P2P,
        PRE_COPY,
        PRE_COPY_P2P,
    ];

    fn path(flags: u32, mut cur: u32, new: u32) -> Option<Vec<u32>> {
        let mut out = vec![cur];
        while cur != new {
            cur = next_step(flags, cur, new)?;
            out.push(cur);
            assert!(out.len() <= 8, "no progress");
        }
        Some(out)
    }

    #[test]
    fn the_uapi_combination_paths() {
        // Some of the combined transitions the uapi lists, with every
        // optional state.
        let want: &[&[u32]] = &[
            &[PRE_COPY, PRE_COPY_P2P, STOP_COPY],
            &[PRE_COPY, RUNNING, RUNNING_P2P, STOP, RESUMING],
            &[PRE_COPY_P2P, RUNNING_P2P, STOP, RESUMING],
            &[RESUMING, STOP, RUNNING_P2P, RUNNING, PRE_COPY],
            &[RESUMING, STOP, STOP_COPY],
            &[RUNNING, RUNNING_P2P, STOP, STOP_COPY],
            &[RUNNING_P2P, RUNNING, PRE_COPY],
            &[STOP, RUNNING_P2P, PRE_COPY_P2P],
            &[STOP_COPY, STOP, RUNNING_P2P, RUNNING],
        ];
        for p in want {
            assert_eq!(path(ALL, p[0], *p.last().unwrap()).as_deref(), Some(*p));
        }
    }

    #[test]
    fn blocked_and_unsupported_transitions() {
        assert_eq!(next_step(ALL, STOP_COPY, PRE_COPY), None);
        assert_eq!(next_step(ALL, STOP_COPY, PRE_COPY_P2P), None);
        assert_eq!(next_step(ALL, RUNNING, ERROR), None);
        assert_eq!(next_step(ALL, ERROR, RUNNING), None);
        let sc = sys::VFIO_MIGRATION_STOP_COPY;
        assert_eq!(next_step(sc, RUNNING, RUNNING_P2P), None);
        assert_eq!(next_step(sc, RUNNING, PRE_COPY), None);
        // Without P2P the P2P states are skipped over.
        assert_eq!(
            path(sc, RUNNING, STOP_COPY),
            Some(vec![RUNNING, STOP, STOP_COPY])
        );
        let pre = sc | sys::VFIO_MIGRATION_PRE_COPY;
        assert_eq!(
            path(pre, PRE_COPY, STOP_COPY),
            Some(vec![PRE_COPY, STOP_COPY])
        );
    }

    #[test]
    fn every_supported_pair_is_reached_through_supported_states() {
        for flags in [
            sys::VFIO_MIGRATION_STOP_COPY,
            sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_P2P,
            sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_PRE_COPY,
            ALL,
        ] {
            for &a in &STATES {
                for &b in STATES.iter().filter(|&&b| b != a) {
                    let blocked = a == STOP_COPY && (b == PRE_COPY || b == PRE_COPY_P2P);
                    let ok = supported(flags, a) && supported(flags, b) && !blocked;
                    let p = path(flags, a, b);
                    assert_eq!(p.is_some(), ok, "{a} -> {b} with {flags:#x}: {p:?}");
                    if let Some(p) = p {
                        assert!(p.iter().all(|&s| supported(flags, s)));
                        // Saving and resuming states appear only at the
                        // ends of a path.
                        let inner = &p[1..p.len() - 1];
                        assert!(
                            inner.iter().all(|s| ![STOP_COPY, RESUMING].contains(s)
                                && (![PRE_COPY, PRE_COPY_P2P].contains(s)
                                    || [PRE_COPY, PRE_COPY_P2P].contains(&a))),
                            "{p:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_stream_round_trips_and_a_bad_one_is_refused() {
        let mut ok = || Ok(());
        let mut a = Edu::new();
        a.write(0x04, 4, 0x1234_5678, false);
        a.buf[7] = 0x5a;
        let mut mig = MigDevice::new(ALL);
        let g = mig.set_state(&mut a, PRE_COPY, &mut ok).unwrap().unwrap();
        let mut stream = vec![0u8; 8192];
        let n = mig.read(g, &mut stream).unwrap();
        assert_eq!(mig.read(g, &mut [0; 8]), Err(Errno::ENOMSG));
        assert_eq!(mig.set_state(&mut a, STOP_COPY, &mut ok), Ok(None));
        let m = mig.read(g, &mut stream[n..]).unwrap();
        assert_eq!(mig.read(g, &mut [0; 8]), Ok(0));
        stream.truncate(n + m);

        let mut b = Edu::new();
        let mut mig_b = MigDevice::new(ALL);
        let g = mig_b.set_state(&mut b, RESUMING, &mut ok).unwrap().unwrap();
        assert_eq!(mig_b.write(g, &stream[..10]), Ok(10));
        // A short stream does not load; the device stays RESUMING.
        assert_eq!(mig_b.set_state(&mut b, STOP, &mut ok), Err(Errno::EINVAL));
        assert_eq!(mig_b.state, RESUMING);
        assert_eq!(mig_b.write(g, &stream[10..]), Ok(stream.len() - 10));
        assert_eq!(mig_b.set_state(&mut b, RUNNING, &mut ok), Ok(None));
        assert_eq!(b.read(0x04, 4), u64::from(!0x1234_5678u32));
        assert_eq!(b.buf[7], 0x5a);
        // The old file is disabled.
        assert_eq!(mig_b.write(g, b"x"), Err(Errno::ENODEV));
    }
}
