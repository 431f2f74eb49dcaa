//! crc32 (IEEE 802.3, the zlib and `crc32fast` checksum) computed while a payload is copied.
//!
//! The reader checks the crc of the bytes it delivers and the writer seals the bytes it
//! publishes. Copying and then checksumming the copy reads every byte twice; at 64 B the
//! checksum was a third of the reader's time, most of it waiting for the copy it had just
//! made. [`Crc32::copy`] folds each 16-byte block into the crc from the register it is
//! copied through (carry-less multiplication, Gopal et al., "Fast CRC computation for
//! generic polynomials using PCLMULQDQ", Intel 2009), so each byte is loaded once and the
//! bytes stored are exactly the bytes checksummed, even when the source changes meanwhile
//! (a stalled writer scribbling on a block the reader is copying out).
//!
//! Without PCLMULQDQ (or on other architectures) it copies through a 256-byte buffer of
//! its own and checksums that with `crc32fast`, keeping the same guarantee.
//!
//! The environment variable `ATBUS_CRC_KERNEL` (read when a segment is opened) narrows
//! the choice, for measuring the kernels against each other or for hosts where 512-bit
//! instructions lower the clock: `128` (never the 512-bit kernel), `portable` (no
//! carry-less multiplication); unset, empty or anything else: the fastest the CPU has.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How this CPU computes [`Crc32::copy`]: chosen once, when a segment is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32 {
    /// PCLMULQDQ with SSE4.1 and SSSE3.
    clmul: bool,
    /// And 512-bit VPCLMULQDQ (AVX-512F).
    wide: bool,
}

impl Crc32 {
    /// The fastest way this CPU supports, narrowed by `ATBUS_CRC_KERNEL`.
    pub(crate) fn detect() -> Crc32 {
        Crc32::cpu().limited_to(std::env::var_os("ATBUS_CRC_KERNEL").as_deref())
    }

    /// This CPU's kernels, narrowed by a value of `ATBUS_CRC_KERNEL` (see the module
    /// docs); an unknown value narrows nothing.
    fn limited_to(self, kernel: Option<&std::ffi::OsStr>) -> Crc32 {
        match kernel.and_then(|k| k.to_str()) {
            Some("128") => Crc32 {
                wide: false,
                ..self
            },
            Some("portable") => Crc32 {
                clmul: false,
                wide: false,
            },
            _ => self,
        }
    }

    /// The fastest way this CPU supports.
    fn cpu() -> Crc32 {
        #[cfg(target_arch = "x86_64")]
        let clmul = is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("ssse3");
        #[cfg(target_arch = "x86_64")]
        let wide =
            clmul && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("vpclmulqdq");
        #[cfg(not(target_arch = "x86_64"))]
        let (clmul, wide) = (false, false);
        Crc32 { clmul, wide }
    }

    /// The portable path only (for tests of the fallback).
    #[cfg(test)]
    fn portable() -> Crc32 {
        Crc32 {
            clmul: false,
            wide: false,
        }
    }

    /// Without the 512-bit kernel (for tests of the 128-bit one).
    #[cfg(test)]
    fn narrow() -> Crc32 {
        Crc32 {
            wide: false,
            ..Crc32::cpu()
        }
    }

    /// crc32 of `data` (as `crc32fast::hash`), by the same kernels without the copy.
    #[inline]
    pub(crate) fn checksum(&self, data: &[u8]) -> u32 {
        let (src, len) = (data.as_ptr(), data.len());
        // SAFETY: `src` is valid for `len` reads; without COPY nothing is written.
        match unsafe { self.kernel::<false>(std::ptr::null_mut(), src, len, 0) } {
            Some(crc) => crc,
            None => crc32fast::hash(data),
        }
    }

    /// Copies `len` bytes from `src` to `dst` and returns the crc32 of the bytes stored
    /// in `dst`, continuing from `crc` (0 to start; pass the result on to continue with
    /// the bytes that follow).
    ///
    /// # Safety
    /// `src` must be valid for reads and `dst` for writes of `len` bytes, and the ranges
    /// must not overlap. Another process may write either meanwhile (shared memory in a
    /// fault); each source byte is then read once, and the value stored is the value
    /// checksummed.
    #[inline(always)]
    pub(crate) unsafe fn copy(&self, dst: *mut u8, src: *const u8, len: usize, crc: u32) -> u32 {
        // SAFETY: the caller's contract.
        if let Some(crc) = unsafe { self.kernel::<true>(dst, src, len, crc) } {
            return crc;
        }
        // Through a buffer of our own: neither `src` (the reader's) nor `dst` (the
        // writer's) is guaranteed to hold still while we checksum it.
        let mut h = crc32fast::Hasher::new_with_initial(crc);
        let mut piece = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = piece.len().min(len - done);
            // SAFETY: done + n <= len: inside the caller's ranges; `piece` is ours.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(done), piece.as_mut_ptr(), n);
                std::ptr::copy_nonoverlapping(piece.as_ptr(), dst.add(done), n);
            }
            h.update(&piece[..n]);
            done += n;
        }
        h.finalize()
    }

    /// Runs the kernel for this CPU; `None` if it has none, or for fewer than 16 bytes.
    ///
    /// # Safety
    /// `src` is valid for `len` reads and, if `COPY`, `dst` for `len` writes, not
    /// overlapping `src`.
    #[inline]
    unsafe fn kernel<const COPY: bool>(
        &self,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        crc: u32,
    ) -> Option<u32> {
        #[cfg(target_arch = "x86_64")]
        if len >= 16 {
            if self.wide && len >= WIDE_FROM {
                // SAFETY: detect() found AVX-512F and VPCLMULQDQ besides the 128-bit
                // kernel's features; len >= WIDE_FROM; the pointers are the caller's
                // contract.
                return Some(unsafe { copy_wide::<COPY>(dst, src, len, crc) });
            }
            if self.clmul {
                // SAFETY: detect() found PCLMULQDQ, SSE4.1 and SSSE3; len >= 16; the
                // pointers are the caller's contract.
                return Some(unsafe { copy_clmul::<COPY>(dst, src, len, crc) });
            }
        }
        let _ = (dst, src, len, crc);
        None
    }
}

/// Copies this long or longer go to the 512-bit kernel (shorter ones straight to the
/// 128-bit one, without a call through the wide kernel).
#[cfg(target_arch = "x86_64")]
const WIDE_FROM: usize = 256;

/// Multipliers `(reflect32(x^(d+32) mod P) << 1, reflect32(x^(d-32) mod P) << 1)` for the
/// IEEE polynomial P: folding a 128-bit block with them moves it `d` bits along the
/// message (the tests derive each from P).
#[cfg(target_arch = "x86_64")]
mod k {
    /// d = 128: into the next block.
    pub const FOLD_128: (i64, i64) = (0x1_7519_97d0, 0x0_ccaa_009e);
    /// d = 256.
    pub const FOLD_256: (i64, i64) = (0x0_f1da_05aa, 0x1_5a54_6366);
    /// d = 384.
    pub const FOLD_384: (i64, i64) = (0x0_3db1_ecdc, 0x1_7435_9406);
    /// d = 512: over four blocks.
    pub const FOLD_512: (i64, i64) = (0x1_5444_2bd4, 0x1_c6e4_1596);
    /// d = 2048: over sixteen blocks.
    pub const FOLD_2048: (i64, i64) = (0x1_1542_778a, 0x1_322d_1430);
    /// `reflect32(x^64 mod P) << 1`: 96 bits down to 64.
    pub const K5: i64 = 0x1_63cd_6124;
    /// P, bit-reflected (33 bits).
    pub const P: i64 = 0x1_db71_0641;
    /// floor(x^64 / P), bit-reflected (33 bits): Barrett's constant.
    pub const MU: i64 = 0x1_f701_1641;
}

/// Two 64-bit multipliers in one register (low, high).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
fn keys((low, high): (i64, i64)) -> __m128i {
    _mm_set_epi64x(high, low)
}

/// Loads the 16 bytes at offset `o` (and stores them to `dst` if `COPY`).
///
/// # Safety
/// `o + 16` bytes are valid for reads from `src` and, if `COPY`, writes to `dst`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
unsafe fn block<const COPY: bool>(dst: *mut u8, src: *const u8, o: usize) -> __m128i {
    // SAFETY: the caller's contract; unaligned loads and stores need no alignment.
    unsafe {
        let v = _mm_loadu_si128(src.add(o).cast());
        if COPY {
            _mm_storeu_si128(dst.add(o).cast(), v);
        }
        v
    }
}

/// Checksums `len >= 16` bytes of `src` with PCLMULQDQ and, if `COPY`, copies them to
/// `dst` (else `dst` is never touched): [`four_lanes`] from 64 bytes on, then [`finish`].
/// The other kernels below take `COPY` the same way.
///
/// # Safety
/// As [`Crc32::copy`], plus: the CPU supports PCLMULQDQ, SSE4.1 and SSSE3, and `len >= 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,sse2,sse4.1,ssse3")]
unsafe fn copy_clmul<const COPY: bool>(dst: *mut u8, src: *const u8, len: usize, crc: u32) -> u32 {
    let seed = _mm_cvtsi32_si128(!crc as i32);
    // SAFETY: `block` reads and writes 16 bytes at 0, and len >= 16; `four_lanes` and
    // `finish` get offsets their contracts allow; this function has their features.
    unsafe {
        let raw = block::<COPY>(dst, src, 0);
        let first = _mm_xor_si128(raw, seed);
        if len < 64 {
            return finish::<COPY>(dst, src, len, 16, first, raw);
        }
        let (x, last, o) = four_lanes::<COPY>(dst, src, len, 0, first);
        finish::<COPY>(dst, src, len, o, x, last)
    }
}

/// Folds the blocks from offset `o` on in four 128-bit lanes while 64 bytes remain, then
/// the lanes together side by side (not one into the next: at 64-byte messages that chain
/// of three folds was most of the checksum's time). `first` is the block at `o`, already
/// loaded (and copied) with the remainder of the bytes before it folded in. Returns the
/// remainder, the raw 16 bytes before the returned offset, and that offset.
///
/// # Safety
/// As [`Crc32::copy`], plus: PCLMULQDQ, and `o + 64 <= len`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn four_lanes<const COPY: bool>(
    dst: *mut u8,
    src: *const u8,
    len: usize,
    mut o: usize,
    first: __m128i,
) -> (__m128i, __m128i, usize) {
    // SAFETY: every `block` offset + 16 <= len: inside the caller's ranges.
    unsafe {
        let mut x3 = first;
        let mut x2 = block::<COPY>(dst, src, o + 16);
        let mut x1 = block::<COPY>(dst, src, o + 32);
        let mut x0 = block::<COPY>(dst, src, o + 48);
        let mut last = x0;
        o += 64;
        let fold_512 = keys(k::FOLD_512);
        while len - o >= 64 {
            x3 = fold(x3, block::<COPY>(dst, src, o), fold_512);
            x2 = fold(x2, block::<COPY>(dst, src, o + 16), fold_512);
            x1 = fold(x1, block::<COPY>(dst, src, o + 32), fold_512);
            last = block::<COPY>(dst, src, o + 48);
            x0 = fold(x0, last, fold_512);
            o += 64;
        }
        let zero = _mm_setzero_si128();
        let x = _mm_xor_si128(
            fold(x3, x0, keys(k::FOLD_384)),
            _mm_xor_si128(
                fold(x2, zero, keys(k::FOLD_256)),
                fold(x1, zero, keys(k::FOLD_128)),
            ),
        );
        (x, last, o)
    }
}

/// Copies and checksums `len >= WIDE_FROM` bytes with 512-bit VPCLMULQDQ: sixteen 128-bit
/// lanes in four registers while 256 bytes remain, then [`four_lanes`] while 64 do, then
/// [`finish`]. ([`Crc32::kernel`] sends shorter copies to [`copy_clmul`].)
///
/// # Safety
/// As [`Crc32::copy`], plus: the CPU supports AVX-512F, VPCLMULQDQ, PCLMULQDQ, SSE4.1 and
/// SSSE3, and `len >= WIDE_FROM`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse2,sse4.1,ssse3")]
unsafe fn copy_wide<const COPY: bool>(dst: *mut u8, src: *const u8, len: usize, crc: u32) -> u32 {
    debug_assert!(len >= WIDE_FROM);
    // SAFETY: each `wide_block` offset + 64 <= len, inside the caller's ranges.
    let wide = |o: usize| unsafe { wide_block::<COPY>(dst, src, o) };
    let mut x0 = _mm512_xor_si512(
        wide(0),
        _mm512_zextsi128_si512(_mm_cvtsi32_si128(!crc as i32)),
    );
    let mut x1 = wide(64);
    let mut x2 = wide(128);
    let mut raw3 = wide(192);
    let mut x3 = raw3;
    let mut o = 256;
    let fold_2048 = _mm512_broadcast_i32x4(keys(k::FOLD_2048));
    while len - o >= 256 {
        x0 = fold_wide(x0, wide(o), fold_2048);
        x1 = fold_wide(x1, wide(o + 64), fold_2048);
        x2 = fold_wide(x2, wide(o + 128), fold_2048);
        raw3 = wide(o + 192);
        x3 = fold_wide(x3, raw3, fold_2048);
        o += 256;
    }
    let last = _mm512_extracti32x4_epi32(raw3, 3);
    // Register by register into the last, then its four lanes into its last lane.
    let fold_512 = _mm512_broadcast_i32x4(keys(k::FOLD_512));
    let x = fold_wide(
        fold_wide(fold_wide(x0, x1, fold_512), x2, fold_512),
        x3,
        fold_512,
    );
    // Lane 3's multipliers are zero: it stays as it is (added back below).
    let lanes = _mm512_inserti32x4(
        _mm512_inserti32x4(
            _mm512_zextsi128_si512(keys(k::FOLD_384)),
            keys(k::FOLD_256),
            1,
        ),
        keys(k::FOLD_128),
        2,
    );
    let moved = fold_wide(x, _mm512_setzero_si512(), lanes);
    let x = _mm_xor_si128(
        _mm_xor_si128(
            _mm512_extracti32x4_epi32(moved, 0),
            _mm512_extracti32x4_epi32(moved, 1),
        ),
        _mm_xor_si128(
            _mm512_extracti32x4_epi32(moved, 2),
            _mm512_extracti32x4_epi32(x, 3),
        ),
    );
    // SAFETY: the caller's contract: `block` at o when o + 16 <= len, `four_lanes` when
    // o + 64 <= len, `finish` with o <= len.
    unsafe {
        if len - o >= 64 {
            let first = fold(x, block::<COPY>(dst, src, o), keys(k::FOLD_128));
            let (x, last, o) = four_lanes::<COPY>(dst, src, len, o, first);
            return finish::<COPY>(dst, src, len, o, x, last);
        }
        finish::<COPY>(dst, src, len, o, x, last)
    }
}

/// Loads the 64 bytes at offset `o` (and stores them to `dst` if `COPY`).
///
/// # Safety
/// `o + 64` bytes are valid for reads from `src` and, if `COPY`, writes to `dst`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn wide_block<const COPY: bool>(dst: *mut u8, src: *const u8, o: usize) -> __m512i {
    // SAFETY: the caller's contract; unaligned loads and stores need no alignment.
    unsafe {
        let v = _mm512_loadu_si512(src.add(o).cast());
        if COPY {
            _mm512_storeu_si512(dst.add(o).cast(), v);
        }
        v
    }
}

/// [`fold`] on four lanes at once.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn fold_wide(a: __m512i, b: __m512i, keys: __m512i) -> __m512i {
    let lo = _mm512_clmulepi64_epi128(a, keys, 0x00);
    let hi = _mm512_clmulepi64_epi128(a, keys, 0x11);
    _mm512_ternarylogic_epi64(b, lo, hi, 0x96)
}

/// Folds in the blocks from offset `o` on (`x` is the remainder of the bytes before, `last`
/// the raw 16 bytes before `o`), then a partial last block, and reduces to the crc.
///
/// # Safety
/// As [`Crc32::copy`], plus: PCLMULQDQ, SSE4.1 and SSSE3, and `16 <= o <= len`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,sse4.1,ssse3")]
unsafe fn finish<const COPY: bool>(
    dst: *mut u8,
    src: *const u8,
    len: usize,
    mut o: usize,
    mut x: __m128i,
    mut last: __m128i,
) -> u32 {
    let fold_128 = keys(k::FOLD_128);
    while len - o >= 16 {
        // SAFETY: o + 16 <= len.
        last = unsafe { block::<COPY>(dst, src, o) };
        x = fold(x, last, fold_128);
        o += 16;
    }
    let n = len - o;
    if n > 0 {
        // The message goes on for n < 16 bytes: the first n bytes of `x` move one block
        // up (they are folded), the other 16 - n join the tail to make a last block.
        // `shl` puts byte i of a register at i + 16 - n (bytes below zeroed); `shr` puts
        // byte i at i - n, and its top bit marks the n top bytes.
        let shl = _mm_add_epi8(
            _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm_set1_epi8(n as i8 - 16),
        );
        let shr = _mm_xor_si128(shl, _mm_set1_epi8(i8::MIN));
        // SAFETY: len >= 16, so the 16 bytes before `len` lie inside `src`.
        let tail = unsafe { _mm_loadu_si128(src.add(len - 16).cast()) };
        // Store the tail with the bytes it overlaps as first loaded (in `last`), not as
        // this second load read them: what is stored is what is checksummed.
        let out = _mm_blendv_epi8(_mm_shuffle_epi8(last, shr), tail, shr);
        if COPY {
            // SAFETY: as the load, in `dst`.
            unsafe { _mm_storeu_si128(dst.add(len - 16).cast(), out) };
        }
        let carried = _mm_shuffle_epi8(x, shl);
        let rest = _mm_blendv_epi8(_mm_shuffle_epi8(x, shr), tail, shr);
        x = fold(carried, rest, fold_128);
    }
    // 128 bits to 96, to 64, then Barrett's reduction to 32 (the paper's section 4,
    // bit-reflected).
    let low32 = _mm_set_epi32(0, 0, 0, -1);
    x = _mm_xor_si128(
        _mm_clmulepi64_si128(x, fold_128, 0x10),
        _mm_srli_si128(x, 8),
    );
    let k5 = _mm_set_epi64x(0, k::K5);
    x = _mm_xor_si128(
        _mm_clmulepi64_si128(_mm_and_si128(x, low32), k5, 0x00),
        _mm_srli_si128(x, 4),
    );
    let p_mu = _mm_set_epi64x(k::MU, k::P);
    let t1 = _mm_clmulepi64_si128(_mm_and_si128(x, low32), p_mu, 0x10);
    let t2 = _mm_clmulepi64_si128(_mm_and_si128(t1, low32), p_mu, 0x00);
    !(_mm_extract_epi32(_mm_xor_si128(x, t2), 1) as u32)
}

/// `b` plus `a` moved along the message by the distance `keys` encode.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn fold(a: __m128i, b: __m128i, keys: __m128i) -> __m128i {
    let lo = _mm_clmulepi64_si128(a, keys, 0x00);
    let hi = _mm_clmulepi64_si128(a, keys, 0x11);
    _mm_xor_si128(_mm_xor_si128(b, lo), hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reflect32(x^n mod P) << 1`, from the polynomial itself.
    fn fold_constant(n: u32) -> i64 {
        const P: u64 = 0x1_04c1_1db7;
        let mut r: u64 = 1;
        for _ in 0..n {
            r <<= 1;
            if r & (1 << 32) != 0 {
                r ^= P;
            }
        }
        i64::from((r as u32).reverse_bits()) << 1
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn constants_follow_from_the_polynomial() {
        assert_eq!(
            k::FOLD_512,
            (fold_constant(512 + 32), fold_constant(512 - 32))
        );
        for (keys, d) in [
            (k::FOLD_128, 128),
            (k::FOLD_256, 256),
            (k::FOLD_384, 384),
            (k::FOLD_2048, 2048),
        ] {
            assert_eq!(
                keys,
                (fold_constant(d + 32), fold_constant(d - 32)),
                "d = {d}"
            );
        }
        assert_eq!(k::K5, fold_constant(64));
        // P reflected over 33 bits; mu = floor(x^64 / P) likewise.
        let p: u64 = 0x1_04c1_1db7;
        assert_eq!(k::P as u64, u64::from((p as u32).reverse_bits()) << 1 | 1);
        let (mut rem, mut mu): (u128, u64) = (1 << 64, 0);
        for shift in (0..=32).rev() {
            if rem & (1u128 << (shift + 32)) != 0 {
                rem ^= u128::from(p) << shift;
                mu |= 1 << shift;
            }
        }
        assert_eq!(
            k::MU as u64,
            u64::from((mu as u32).reverse_bits()) << 1 | (mu >> 32)
        );
    }

    fn check(crc: Crc32) {
        let src: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut lens: Vec<usize> = (0..=300).collect();
        lens.extend([
            1023, 1024, 1025, 2047, 2048, 4096, 4111, 16_384, 16_399, 19_000,
        ]);
        for len in lens {
            for off in [0, 1, 5, 16, 31] {
                let data = &src[off..off + len];
                let mut dst = vec![0xa5u8; len + 40];
                // SAFETY: both ranges are in bounds of their vectors and distinct.
                let got = unsafe { crc.copy(dst.as_mut_ptr().add(7), data.as_ptr(), len, 0) };
                assert_eq!(got, crc32fast::hash(data), "len {len} off {off}");
                assert_eq!(crc.checksum(data), got, "checksum, len {len} off {off}");
                assert_eq!(&dst[7..7 + len], data, "len {len} off {off}");
                assert!(dst[..7].iter().chain(&dst[7 + len..]).all(|&b| b == 0xa5));
                // In two pieces, the crc carried from the first to the second.
                let cut = len / 3;
                let mut dst2 = vec![0u8; len];
                // SAFETY: as above.
                let got2 = unsafe {
                    let c = crc.copy(dst2.as_mut_ptr(), data.as_ptr(), cut, 0);
                    crc.copy(
                        dst2.as_mut_ptr().add(cut),
                        data.as_ptr().add(cut),
                        len - cut,
                        c,
                    )
                };
                assert_eq!(got2, got, "len {len} cut {cut}");
                assert_eq!(dst2, data);
            }
        }
    }

    #[test]
    fn copies_and_checksums_every_length_and_alignment() {
        check(Crc32::detect());
    }

    #[test]
    fn the_environment_only_narrows_the_choice() {
        use std::ffi::OsStr;
        let cpu = Crc32::cpu();
        let narrow = cpu.limited_to(Some(OsStr::new("128")));
        assert_eq!((narrow.clmul, narrow.wide), (cpu.clmul, false));
        let portable = cpu.limited_to(Some(OsStr::new("portable")));
        assert_eq!((portable.clmul, portable.wide), (false, false));
        for other in [None, Some(OsStr::new("")), Some(OsStr::new("512"))] {
            let same = cpu.limited_to(other);
            assert_eq!((same.clmul, same.wide), (cpu.clmul, cpu.wide), "{other:?}");
        }
    }

    #[test]
    fn narrow_path_agrees() {
        check(Crc32::narrow());
    }

    #[test]
    fn portable_path_agrees() {
        check(Crc32::portable());
    }
}
