//! Payload copies that stay off glibc's slow path.
//!
//! On the AMD EPYC hosts we measured, glibc's `memcpy` of 4 KiB and more takes its
//! `rep movsb` path, which runs ~20x slower when `dst - src` is not a multiple of 32.
//! Payloads in the ring are 32-byte aligned, but the caller's buffer can be anything, so
//! large copies go in 2 KiB pieces: each piece takes the vector loop, fast at any
//! alignment. `black_box` on the piece size keeps LLVM from fusing the pieces back into
//! one large `memcpy`.

/// Copies below this size go to `memcpy` in one call.
const SPLIT_ABOVE: usize = 4096;
/// Piece size for larger copies.
const PIECE: usize = 2048;

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the ranges must
/// not overlap. Either side may be shared memory that another process writes; the bytes
/// read are then whatever the hardware returns, and callers verify them (crc32c).
#[inline]
pub unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    if len < SPLIT_ABOVE {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = std::hint::black_box(PIECE.min(len - done));
        // SAFETY: done + n <= len, so both pieces lie inside the caller's ranges.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte_at_every_offset() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 31, 4095, 4096, 4097, 6144, 10_000] {
            for off in [0, 1, 16, 31] {
                let mut dst = vec![0u8; len + 64];
                // SAFETY: both ranges are in bounds of their vectors and distinct.
                unsafe { copy_bytes(src.as_ptr().add(off), dst.as_mut_ptr().add(3), len) };
                assert_eq!(&dst[3..3 + len], &src[off..off + len]);
                assert!(dst[..3].iter().all(|&b| b == 0));
                assert!(dst[3 + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
