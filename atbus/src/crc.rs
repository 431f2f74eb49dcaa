//! crc32c (Castagnoli, the iSCSI, ext4 and SSE4.2 checksum) computed while a payload is
//! copied.
//!
//! The reader checks the crc of the bytes it delivers and the writer seals the bytes it
//! publishes. Copying and then checksumming the copy reads every byte twice, so
//! [`Crc32c::copy`] checksums each word from the register it is copied through: each byte
//! is loaded once, and the bytes stored are exactly the bytes checksummed, even when the
//! source changes meanwhile (a stalled writer scribbling on a block the reader is copying
//! out).
//!
//! Kernels, the fastest the CPU has:
//! - *512-bit folding* (AVX-512 VPCLMULQDQ), for copies of [`WIDE_FROM`] bytes and more:
//!   carry-less multiplication folds 64-byte blocks (Gopal et al., "Fast CRC computation
//!   for generic polynomials using PCLMULQDQ", Intel 2009);
//! - *streams*: the SSE4.2 crc32 instruction on three independent streams per stripe,
//!   joined with one carry-less multiplication each, copying through 32-byte AVX2
//!   registers. On the AMD EPYC (Zen 2) we measured, 128-bit folding ran at ~11.5 GB/s
//!   and was the largest cost of a 16 KiB round trip; the streams check 16 KiB in ~0.93 µs
//!   against ~1.42 µs. crc32c is the polynomial the instruction computes: that is why the
//!   checksum is crc32c and not zlib's crc32;
//! - *128-bit folding* (PCLMULQDQ) where there is no AVX2, for 16 bytes and more;
//! - *portable*: elsewhere, a copy through a 256-byte buffer of its own, checksummed by
//!   slicing-by-8 tables, keeping the same guarantee.
//!
//! The environment variable `ATBUS_CRC_KERNEL` (read when a segment is opened) narrows
//! the choice, for measuring the kernels against each other or for hosts where 512-bit
//! instructions lower the clock: `128` (never the 512-bit kernel), `clmul` (128-bit
//! folding, not the streams, never 512-bit), `portable` (no x86-64 kernel); unset, empty
//! or anything else: the fastest the CPU has.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// crc32c of `data` (as iSCSI defines it: reflected polynomial 0x82F63B78, initial and
/// final xor with all ones), continuing from `crc` (0 to start), by this CPU's fastest
/// kernel.
pub(crate) fn crc32c(crc: u32, data: &[u8]) -> u32 {
    static CPU: OnceLock<Crc32c> = OnceLock::new();
    CPU.get_or_init(Crc32c::detect).checksum_from(crc, data)
}

/// How this CPU computes [`Crc32c::copy`]: chosen once, when a segment is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32c {
    /// 128-bit folding: PCLMULQDQ, SSE4.1 and SSSE3.
    clmul: bool,
    /// The crc32 instruction in three streams: SSE4.2, AVX2 and PCLMULQDQ.
    streams: bool,
    /// PREFETCHW, which the streams kernel uses when it copies into lines another core
    /// holds.
    prefetchw: bool,
    /// 512-bit folding: AVX-512F and VPCLMULQDQ, besides `clmul`'s features.
    wide: bool,
}

impl Crc32c {
    /// The fastest way this CPU supports, narrowed by `ATBUS_CRC_KERNEL`.
    pub(crate) fn detect() -> Crc32c {
        Crc32c::cpu().limited_to(std::env::var_os("ATBUS_CRC_KERNEL").as_deref())
    }

    /// This CPU's kernels, narrowed by a value of `ATBUS_CRC_KERNEL` (see the module
    /// docs); an unknown value narrows nothing.
    fn limited_to(self, kernel: Option<&std::ffi::OsStr>) -> Crc32c {
        match kernel.and_then(|k| k.to_str()) {
            Some("128") => Crc32c {
                wide: false,
                ..self
            },
            Some("clmul") => Crc32c {
                streams: false,
                wide: false,
                ..self
            },
            Some("portable") => Crc32c {
                clmul: false,
                streams: false,
                prefetchw: false,
                wide: false,
            },
            _ => self,
        }
    }

    /// The fastest way this CPU supports.
    fn cpu() -> Crc32c {
        #[cfg(target_arch = "x86_64")]
        {
            let clmul = is_x86_feature_detected!("pclmulqdq")
                && is_x86_feature_detected!("sse4.1")
                && is_x86_feature_detected!("ssse3");
            Crc32c {
                clmul,
                streams: is_x86_feature_detected!("sse4.2")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("pclmulqdq"),
                // CPUID leaf 0x8000_0001, ECX bit 8 (3DNowPrefetch / PRFCHW);
                // `is_x86_feature_detected!` does not know it.
                prefetchw: __cpuid(0x8000_0000).eax >= 0x8000_0001
                    && __cpuid(0x8000_0001).ecx & (1 << 8) != 0,
                wide: clmul
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("vpclmulqdq"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Crc32c {
            clmul: false,
            streams: false,
            prefetchw: false,
            wide: false,
        }
    }

    /// Whether this CPU has PREFETCHW (and the kernel choice allows it): the condition
    /// of [`prefetch_for_write`].
    #[inline]
    pub(crate) fn prefetchw(&self) -> bool {
        self.prefetchw
    }

    /// crc32c of `data`, by the same kernels without the copy.
    #[inline]
    pub(crate) fn checksum(&self, data: &[u8]) -> u32 {
        self.checksum_from(0, data)
    }

    /// crc32c of `data` continued from `crc`, without the copy.
    #[inline]
    fn checksum_from(&self, crc: u32, data: &[u8]) -> u32 {
        let (src, len) = (data.as_ptr(), data.len());
        // SAFETY: `src` is valid for `len` reads (it is `data`'s); without COPY the
        // kernels never touch `dst`, so the null pointer is never written; `crc` is a
        // plain value.
        match unsafe { self.kernel::<false>(std::ptr::null_mut(), src, len, crc) } {
            Some(crc) => crc,
            None => !portable_update(!crc, data),
        }
    }

    /// Copies `len` bytes from `src` to `dst` and returns the crc32c of the bytes stored
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
        let mut state = !crc;
        let mut piece = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = piece.len().min(len - done);
            // SAFETY: done + n <= len: inside the caller's ranges; `piece` is ours.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(done), piece.as_mut_ptr(), n);
                std::ptr::copy_nonoverlapping(piece.as_ptr(), dst.add(done), n);
            }
            state = portable_update(state, &piece[..n]);
            done += n;
        }
        !state
    }

    /// Runs the kernel for this CPU; `None` if it has none (or, for the folding kernels,
    /// for fewer than 16 bytes).
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
        {
            if self.wide && len >= WIDE_FROM {
                // SAFETY: detect() found AVX-512F and VPCLMULQDQ besides the 128-bit
                // kernel's features; len >= WIDE_FROM; the pointers are the caller's
                // contract.
                return Some(unsafe { copy_wide::<COPY>(dst, src, len, crc) });
            }
            if self.streams {
                // SAFETY: detect() found SSE4.2, AVX2 and PCLMULQDQ (and PREFETCHW if
                // `prefetchw`); the pointers are the caller's contract.
                return Some(unsafe {
                    if self.prefetchw {
                        copy_streams::<COPY, true>(dst, src, len, crc)
                    } else {
                        copy_streams::<COPY, false>(dst, src, len, crc)
                    }
                });
            }
            if self.clmul && len >= 16 {
                // SAFETY: detect() found PCLMULQDQ, SSE4.1 and SSSE3; len >= 16; the
                // pointers are the caller's contract.
                return Some(unsafe { copy_clmul::<COPY>(dst, src, len, crc) });
            }
        }
        let _ = (dst, src, len, crc);
        None
    }
}

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `TABLES[k][b]` is the crc register after byte `b` followed by `k`
/// zero bytes.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// The crc register (not inverted) after `data`, eight bytes per step.
fn portable_update(mut state: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ u64::from(state);
        let b = v.to_le_bytes();
        state = TABLES[7][b[0] as usize]
            ^ TABLES[6][b[1] as usize]
            ^ TABLES[5][b[2] as usize]
            ^ TABLES[4][b[3] as usize]
            ^ TABLES[3][b[4] as usize]
            ^ TABLES[2][b[5] as usize]
            ^ TABLES[1][b[6] as usize]
            ^ TABLES[0][b[7] as usize];
    }
    for &b in words.remainder() {
        state = (state >> 8) ^ TABLES[0][((state ^ u32::from(b)) & 0xff) as usize];
    }
    state
}

/// Bytes per stream in one stripe of the streams kernel: stripes of three `LONG_STREAM`s
/// while they fit, then of three `SHORT_STREAM`s. Longer streams measured slower in a
/// 16 KiB round trip between processes (streams of 1 KiB: 14.4 µs against 12.1 µs),
/// shorter ones (128 B) no better. (Bringing the destination to a 32-byte boundary
/// first measured no better either.)
#[cfg(target_arch = "x86_64")]
const LONG_STREAM: usize = 256;
#[cfg(target_arch = "x86_64")]
const SHORT_STREAM: usize = 32;

/// Loads the 8 bytes at offset `o` (and stores them to `dst` if `COPY`).
///
/// # Safety
/// `o + 8` bytes are valid for reads from `src` and, if `COPY`, writes to `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn word<const COPY: bool>(dst: *mut u8, src: *const u8, o: usize) -> u64 {
    // SAFETY: the caller's contract; unaligned reads and writes need no alignment.
    unsafe {
        let v = src.add(o).cast::<u64>().read_unaligned();
        if COPY {
            dst.add(o).cast::<u64>().write_unaligned(v);
        }
        v
    }
}

/// Loads the 32 bytes at offset `o` (and stores them to `dst` if `COPY`). Whole 32-byte
/// loads and stores, not 8-byte ones: a 16 KiB round trip between processes took 26 µs
/// with 8-byte, 14 µs with 16-byte and 12 µs with 32-byte ones (the lines come from the
/// other core's cache, and fewer, wider accesses keep more of them in flight).
///
/// # Safety
/// `o + 32` bytes are valid for reads from `src` and, if `COPY`, writes to `dst`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block32<const COPY: bool>(dst: *mut u8, src: *const u8, o: usize) -> __m256i {
    // SAFETY: the caller's contract; unaligned loads and stores need no alignment.
    unsafe {
        let v = _mm256_loadu_si256(src.add(o).cast());
        if COPY {
            _mm256_storeu_si256(dst.add(o).cast(), v);
        }
        v
    }
}

/// The crc register `c` after the 16 bytes in `v`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse4.2")]
fn crc_block16(c: u64, v: __m128i) -> u64 {
    let c = _mm_crc32_u64(c, _mm_cvtsi128_si64(v) as u64);
    _mm_crc32_u64(c, _mm_extract_epi64(v, 1) as u64)
}

/// The crc register `c` after the 32 bytes in `v`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse4.2,avx2")]
fn crc_block32(c: u64, v: __m256i) -> u64 {
    let c = crc_block16(c, _mm256_castsi256_si128(v));
    crc_block16(c, _mm256_extracti128_si256(v, 1))
}

/// The crc register `c` moved along the message over zeros, by the distance `k` encodes
/// (`k = reflect32(x^(8n - 32) mod P) << 1` moves it `n` bytes): the carry-less product
/// is the 64-bit word whose crc32c is `c` times `x^(8n)`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse4.2,pclmulqdq")]
fn shift(c: u64, k: i64) -> u64 {
    let product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(c as i64), _mm_cvtsi64_si128(k), 0);
    _mm_crc32_u64(0, _mm_cvtsi128_si64(product) as u64)
}

/// Asks for the cache line at `p` in a state this core can write (PREFETCHW): the
/// writer's copy into the ring then does not wait for each line the reader's core held.
///
/// # Safety
/// The CPU supports PREFETCHW ([`Crc32c::prefetchw`]). (A prefetch never faults and
/// changes no memory.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn prefetch_for_write(p: *const u8) {
    // SAFETY: the caller's contract; the instruction reads and writes no memory, stack
    // or flags.
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
}

/// Checksums (and, if `COPY`, copies) three streams of `stream` bytes side by side, from
/// offset `o` on, and joins them: the register after the stripe, from `c` before it.
/// The streams start from zero and `c` is moved over the whole stripe beside them, so a
/// stripe's streams never wait for the previous stripe's join. Each 64 bytes it asks for
/// the lines one stripe ahead, up to `len` (and, if `PREFETCHW`, the destination's for
/// writing): the hardware prefetcher does not follow three interleaved streams (12.2 µs
/// without, 11.1 µs with, for a 16 KiB round trip).
///
/// # Safety
/// As [`Crc32c::copy`], plus: SSE4.2, AVX2 and PCLMULQDQ (and PREFETCHW if `PREFETCHW`),
/// `o + 3 * stream <= len` and `stream` a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stripe<const COPY: bool, const PREFETCHW: bool>(
    dst: *mut u8,
    src: *const u8,
    len: usize,
    o: usize,
    stream: usize,
    c: u64,
    (three, two, one): (i64, i64, i64),
) -> u64 {
    let (mut a, mut b, mut d) = (0, 0, 0);
    let mut i = 0;
    while i < stream {
        if i % 64 == 0 {
            let next = o + 3 * stream + i;
            // Only lines of this message: past its end lie other blocks, which other
            // writers may be writing and the reader polling.
            for s in [next, next + stream, next + 2 * stream] {
                if s < len {
                    // SAFETY: s < len: inside the caller's ranges; the caller has the
                    // features.
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(src.add(s).cast());
                        if COPY && PREFETCHW {
                            prefetch_for_write(dst.add(s));
                        }
                    }
                }
            }
        }
        // SAFETY: o + 2 * stream + i + 32 <= o + 3 * stream: inside the caller's ranges;
        // the caller has the features.
        unsafe {
            a = crc_block32(a, block32::<COPY>(dst, src, o + i));
            b = crc_block32(b, block32::<COPY>(dst, src, o + stream + i));
            d = crc_block32(d, block32::<COPY>(dst, src, o + 2 * stream + i));
        }
        i += 32;
    }
    // Linear: each register moves over the bytes after it.
    // SAFETY: the caller has SSE4.2 and PCLMULQDQ.
    unsafe { shift(c, three) ^ shift(a, two) ^ shift(b, one) ^ d }
}

/// Checksums `len` bytes of `src` with the crc32 instruction and, if `COPY`, copies them
/// to `dst` (else `dst` is never touched): stripes of three streams while they fit, then
/// word by word, then the last 0-7 bytes as 4, 2 and 1.
///
/// # Safety
/// As [`Crc32c::copy`], plus: the CPU supports SSE4.2, AVX2 and PCLMULQDQ (and PREFETCHW
/// if `PREFETCHW`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,avx2,pclmulqdq")]
unsafe fn copy_streams<const COPY: bool, const PREFETCHW: bool>(
    dst: *mut u8,
    src: *const u8,
    len: usize,
    crc: u32,
) -> u32 {
    let mut c = u64::from(!crc);
    let mut o = 0;
    // SAFETY: each access below (`stripe`, `block32`, `block`, `word` and the 4-, 2-
    // and 1-byte reads and writes) is guarded by `len - o` at least its width, so it
    // ends at or before `len`, inside the caller's ranges; this function has the
    // features they need (SSE4.2, AVX2, PCLMULQDQ; PREFETCHW per the caller).
    unsafe {
        while len - o >= 3 * LONG_STREAM {
            c = stripe::<COPY, PREFETCHW>(dst, src, len, o, LONG_STREAM, c, k::SHIFT_LONG);
            o += 3 * LONG_STREAM;
        }
        while len - o >= 3 * SHORT_STREAM {
            c = stripe::<COPY, PREFETCHW>(dst, src, len, o, SHORT_STREAM, c, k::SHIFT_SHORT);
            o += 3 * SHORT_STREAM;
        }
        // Whole 32- and 16-byte loads and stores for the rest: fewer stores into the
        // lines the reader may be polling.
        while len - o >= 32 {
            c = crc_block32(c, block32::<COPY>(dst, src, o));
            o += 32;
        }
        if len - o >= 16 {
            c = crc_block16(c, block::<COPY>(dst, src, o));
            o += 16;
        }
        if len - o >= 8 {
            c = _mm_crc32_u64(c, word::<COPY>(dst, src, o));
            o += 8;
        }
        let mut c = c as u32;
        if len - o >= 4 {
            let v = src.add(o).cast::<u32>().read_unaligned();
            if COPY {
                dst.add(o).cast::<u32>().write_unaligned(v);
            }
            c = _mm_crc32_u32(c, v);
            o += 4;
        }
        if len - o >= 2 {
            let v = src.add(o).cast::<u16>().read_unaligned();
            if COPY {
                dst.add(o).cast::<u16>().write_unaligned(v);
            }
            c = _mm_crc32_u16(c, v);
            o += 2;
        }
        if o < len {
            let v = src.add(o).read();
            if COPY {
                dst.add(o).write(v);
            }
            c = _mm_crc32_u8(c, v);
        }
        !c
    }
}

/// Copies this long or longer go to the 512-bit kernel (shorter ones to the crc32
/// instruction).
#[cfg(target_arch = "x86_64")]
const WIDE_FROM: usize = 256;

/// Multipliers `(reflect32(x^(d+32) mod P) << 1, reflect32(x^(d-32) mod P) << 1)` for the
/// Castagnoli polynomial P: folding a 128-bit block with them moves it `d` bits along the
/// message; and the crc32-instruction kernel's stripe joins (the tests derive each from P).
#[cfg(target_arch = "x86_64")]
mod k {
    /// d = 128: into the next block.
    pub const FOLD_128: (i64, i64) = (0x0_f20c_0dfe, 0x1_4cd0_0bd6);
    /// d = 256.
    pub const FOLD_256: (i64, i64) = (0x1_384a_a63a, 0x0_ba4f_c28e);
    /// d = 384.
    pub const FOLD_384: (i64, i64) = (0x0_1c29_1d04, 0x1_d82c_63da);
    /// d = 512: over four blocks.
    pub const FOLD_512: (i64, i64) = (0x0_740e_ef02, 0x0_9e4a_ddf8);
    /// d = 2048: over sixteen blocks.
    pub const FOLD_2048: (i64, i64) = (0x0_dcb1_7aa4, 0x0_b9e0_2b86);
    /// `reflect32(x^64 mod P) << 1`: 96 bits down to 64.
    pub const K5: i64 = 0x0_dd45_aab8;
    /// P, bit-reflected (33 bits).
    pub const P: i64 = 0x1_05ec_76f1;
    /// floor(x^64 / P), bit-reflected (33 bits): Barrett's constant.
    pub const MU: i64 = 0x0_dea7_13f1;
    /// `reflect32(x^(8n - 32) mod P) << 1` for n = 3, 2 and 1 `LONG_STREAM`s:
    /// [`super::shift`].
    pub const SHIFT_LONG: (i64, i64, i64) = (0x0_d7a4_825c, 0x0_dd7e_3b0c, 0x0_b9e0_2b86);
    /// The same for `SHORT_STREAM`s.
    pub const SHIFT_SHORT: (i64, i64, i64) = (0x1_02f9_b8a2, 0x0_9e4a_ddf8, 0x0_ba4f_c28e);
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
/// As [`Crc32c::copy`], plus: the CPU supports PCLMULQDQ, SSE4.1 and SSSE3, and `len >= 16`.
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
/// As [`Crc32c::copy`], plus: PCLMULQDQ, and `o + 64 <= len`.
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
/// [`finish`]. ([`Crc32c::kernel`] sends shorter copies to [`copy_streams`].)
///
/// # Safety
/// As [`Crc32c::copy`], plus: the CPU supports AVX-512F, VPCLMULQDQ, PCLMULQDQ, SSE4.1 and
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
/// As [`Crc32c::copy`], plus: PCLMULQDQ, SSE4.1 and SSSE3, and `16 <= o <= len`.
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
    use std::ffi::OsStr;

    /// The Castagnoli polynomial, not reflected, with its x^32 term.
    const P33: u64 = 0x1_1edc_6f41;

    /// `reflect32(x^n mod P) << 1`, from the polynomial itself.
    fn fold_constant(n: u32) -> i64 {
        let mut r: u64 = 1;
        for _ in 0..n {
            r <<= 1;
            if r & (1 << 32) != 0 {
                r ^= P33;
            }
        }
        i64::from((r as u32).reverse_bits()) << 1
    }

    /// crc32c bit by bit, from the definition: the reference every kernel must equal.
    fn reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn the_reference_is_crc32c() {
        // The check value of CRC-32C (iSCSI) in the catalogue of parametrised CRCs.
        assert_eq!(reference(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(POLY, (P33 as u32).reverse_bits());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn constants_follow_from_the_polynomial() {
        for (keys, d) in [
            (k::FOLD_128, 128),
            (k::FOLD_256, 256),
            (k::FOLD_384, 384),
            (k::FOLD_512, 512),
            (k::FOLD_2048, 2048),
        ] {
            assert_eq!(
                keys,
                (fold_constant(d + 32), fold_constant(d - 32)),
                "d = {d}"
            );
        }
        assert_eq!(k::K5, fold_constant(64));
        for (keys, stream) in [(k::SHIFT_LONG, LONG_STREAM), (k::SHIFT_SHORT, SHORT_STREAM)] {
            let bits = 8 * stream as u32;
            assert_eq!(
                keys,
                (
                    fold_constant(3 * bits - 32),
                    fold_constant(2 * bits - 32),
                    fold_constant(bits - 32)
                ),
                "stream {stream}"
            );
        }
        // P reflected over 33 bits; mu = floor(x^64 / P) likewise.
        assert_eq!(k::P as u64, u64::from((P33 as u32).reverse_bits()) << 1 | 1);
        let (mut rem, mut mu): (u128, u64) = (1 << 64, 0);
        for shift in (0..=32).rev() {
            if rem & (1u128 << (shift + 32)) != 0 {
                rem ^= u128::from(P33) << shift;
                mu |= 1 << shift;
            }
        }
        assert_eq!(
            k::MU as u64,
            u64::from((mu as u32).reverse_bits()) << 1 | (mu >> 32)
        );
    }

    fn check(crc: Crc32c) {
        let src: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut lens: Vec<usize> = (0..=300).collect();
        lens.extend([
            767, 768, 769, 863, 864, 1023, 1024, 1025, 2047, 2048, 4096, 4111, 16_384, 16_399,
            19_000,
        ]);
        for len in lens {
            for off in [0, 1, 5, 16, 31] {
                let data = &src[off..off + len];
                let mut dst = vec![0xa5u8; len + 40];
                // SAFETY: both ranges are in bounds of their vectors and distinct.
                let got = unsafe { crc.copy(dst.as_mut_ptr().add(7), data.as_ptr(), len, 0) };
                assert_eq!(got, reference(data), "{crc:?} len {len} off {off}");
                assert_eq!(crc.checksum(data), got, "checksum, len {len} off {off}");
                assert_eq!(&dst[7..7 + len], data, "len {len} off {off}");
                assert!(dst[..7].iter().chain(&dst[7 + len..]).all(|&b| b == 0xa5));
                // In two pieces, the crc carried from the first to the second.
                for cut in [len / 3, len.saturating_sub(5)] {
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
                    let c = crc.checksum_from(crc.checksum(&data[..cut]), &data[cut..]);
                    assert_eq!(c, got, "checksum_from, len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn copies_and_checksums_every_length_and_alignment() {
        check(Crc32c::detect());
    }

    #[test]
    fn the_environment_only_narrows_the_choice() {
        let cpu = Crc32c::cpu();
        let kernels = |c: Crc32c| (c.clmul, c.streams, c.prefetchw, c.wide);
        let narrow = cpu.limited_to(Some(OsStr::new("128")));
        assert_eq!(
            kernels(narrow),
            (cpu.clmul, cpu.streams, cpu.prefetchw, false)
        );
        let folding = cpu.limited_to(Some(OsStr::new("clmul")));
        assert_eq!(kernels(folding), (cpu.clmul, false, cpu.prefetchw, false));
        let portable = cpu.limited_to(Some(OsStr::new("portable")));
        assert_eq!(kernels(portable), (false, false, false, false));
        for other in [None, Some(OsStr::new("")), Some(OsStr::new("512"))] {
            assert_eq!(kernels(cpu.limited_to(other)), kernels(cpu), "{other:?}");
        }
    }

    #[test]
    fn every_kernel_agrees() {
        for kernel in ["128", "clmul", "portable"] {
            check(Crc32c::cpu().limited_to(Some(OsStr::new(kernel))));
        }
        // The streams kernel without PREFETCHW.
        check(Crc32c {
            prefetchw: false,
            ..Crc32c::cpu()
        });
    }
}
