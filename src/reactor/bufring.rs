//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a free buffer
//! for each receive, so idle connections hold no receive memory at all.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::DisabledRing;

/// One anonymous, page-aligned mapping that is released on drop.
struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions;
        // the result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { base, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len describe a mapping this Region created and still owns.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// `entries` buffers of `buffer_bytes` each, registered as buffer group `group`.
pub struct BufRing {
    ring: Region,
    buffers: Region,
    entries: u16,
    buffer_bytes: u32,
    group: u16,
    /// Local copy of the tail; published to the kernel by [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    /// Registers the ring with `uring`, which must still be disabled: once enabled, its
    /// policy refuses every registration. `entries` must be a power of two ≤ 32768.
    pub fn register(uring: &DisabledRing, group: u16, entries: u16, buffer_bytes: u32) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two() && entries <= 32768, "buffer ring entries must be a power of two");
        let ring = Region::new(usize::from(entries) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Region::new(usize::from(entries) * buffer_bytes as usize)?;
        // SAFETY: `ring` is page-aligned, sized for `entries` entries, and lives as long as
        // this BufRing. The group is never unregistered (the ring's policy would refuse it);
        // owners declare their IoUring before the BufRing (Shard, Engine), so the io_uring is
        // closed before this memory is unmapped.
        unsafe { uring.ring.submitter().register_buf_ring_with_flags(ring.base.as_ptr() as u64, entries, group, 0)? };
        let mut this = BufRing { ring, buffers, entries, buffer_bytes, group, tail: 0 };
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.publish();
        Ok(this)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    pub fn buffer_bytes(&self) -> u32 {
        self.buffer_bytes
    }

    /// The first `len` bytes of buffer `bid`, as filled by a completed receive.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.entries && len <= self.buffer_bytes as usize);
        // SAFETY: bid is in range, so the slice lies inside `buffers`; the kernel wrote it
        // before posting the completion that handed us `bid`, and will not touch it again
        // until we recycle it, which needs `&mut self` while this borrow is alive.
        unsafe { std::slice::from_raw_parts(self.buffers.base.as_ptr().add(usize::from(bid) * self.buffer_bytes as usize), len) }
    }

    /// Hands buffer `bid` back (visible to the kernel after [`BufRing::publish`]).
    pub fn recycle(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let slot = usize::from(self.tail & mask);
        // SAFETY: slot < entries, so the entry lies inside `ring`; the kernel only reads
        // entries between its head and our published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.ring.base.as_ptr().cast::<BufRingEntry>().add(slot) };
        // SAFETY: bid < entries keeps the address inside `buffers`.
        let addr = unsafe { self.buffers.base.as_ptr().add(usize::from(bid) * self.buffer_bytes as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buffer_bytes);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers to the kernel with one release store.
    pub fn publish(&self) {
        // SAFETY: the ring base is the first entry, as `BufRingEntry::tail` requires; the
        // tail field is a naturally aligned u16 shared with the kernel, so an atomic store is
        // the right way to write it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.base.as_ptr().cast::<BufRingEntry>()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}
