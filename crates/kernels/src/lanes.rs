//! Four f32 lanes: wasm SIMD (`v128`) in the browser, a plain array elsewhere. Both multiply,
//! then add (no fused multiply-add), so the kernels give bit-identical results with either. The
//! relaxed-SIMD lanes (feature `relaxed-simd`, wasm only) fuse the two where the CPU has FMA:
//! one instruction instead of two, rounded once, so their results differ in the last bits.

/// The vector operations the convolution kernel needs. Pointers are raw because the kernel's
/// hot loop must not pay for bounds checks; its caller checks every size once up front.
pub(crate) trait Lanes: Copy {
    fn zero() -> Self;
    /// `*p` in every lane.
    ///
    /// # Safety
    /// `p` must be valid for reading one f32.
    unsafe fn splat_load(p: *const f32) -> Self;
    /// # Safety
    /// `p` must be valid for reading four f32 (no alignment needed).
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` must be valid for writing four f32 (no alignment needed).
    unsafe fn store(self, p: *mut f32);
    /// `self + a * b`, rounded after the multiply and after the add.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `max(self, 0)`; NaN becomes 0.
    fn relu(self) -> Self;
}

/// The portable lanes: natively the compiler turns these into SSE/NEON on its own.
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; 4]);

impl Lanes for Portable {
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; 4])
    }

    #[inline(always)]
    unsafe fn splat_load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is readable.
        Portable([unsafe { p.read() }; 4])
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees four readable floats at `p`.
        Portable(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees four writable floats at `p`.
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
    }

    #[inline(always)]
    fn relu(self) -> Self {
        Portable(self.0.map(|v| if v > 0.0 { v } else { 0.0 }))
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) use simd::Simd128;

#[cfg(target_arch = "wasm32")]
mod simd {
    use super::Lanes;
    use core::arch::wasm32::*;

    /// wasm SIMD lanes. Only used inside `Conv3x3::forward_simd128`, which is compiled with
    /// `simd128`: every method is inlined there and becomes one SIMD instruction. (In wasm a
    /// missing target feature cannot cause undefined behaviour, only a module that fails to
    /// validate, so Rust lets these intrinsics be called without `unsafe`.)
    #[derive(Clone, Copy)]
    pub(crate) struct Simd128(pub(super) v128);

    impl Lanes for Simd128 {
        #[inline(always)]
        fn zero() -> Self {
            Simd128(f32x4_splat(0.0))
        }

        #[inline(always)]
        unsafe fn splat_load(p: *const f32) -> Self {
            // SAFETY: the caller guarantees `p` is readable.
            Simd128(unsafe { v128_load32_splat(p.cast()) })
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller guarantees four readable floats; v128_load needs no alignment.
            Simd128(unsafe { v128_load(p.cast()) })
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller guarantees four writable floats; v128_store needs no alignment.
            unsafe { v128_store(p.cast(), self.0) }
        }

        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            Simd128(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }

        #[inline(always)]
        fn relu(self) -> Self {
            // pmax(0, x) is `0 < x ? x : 0`: NaN becomes 0, as in the portable lanes.
            Simd128(f32x4_pmax(f32x4_splat(0.0), self.0))
        }
    }
}

#[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
pub(crate) use relaxed::RelaxedSimd128;

#[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
mod relaxed {
    use super::{Lanes, Simd128};
    use core::arch::wasm32::*;

    /// wasm SIMD lanes whose multiply-add is `f32x4.relaxed_madd`: a fused multiply-add where
    /// the hardware has one (V8 on x86-64 with FMA, ARM64), else multiply then add. Only used
    /// inside `Conv3x3::forward_relaxed`, compiled with `simd128` and `relaxed-simd`.
    #[derive(Clone, Copy)]
    pub(crate) struct RelaxedSimd128(Simd128);

    impl Lanes for RelaxedSimd128 {
        #[inline(always)]
        fn zero() -> Self {
            RelaxedSimd128(Simd128::zero())
        }

        #[inline(always)]
        unsafe fn splat_load(p: *const f32) -> Self {
            // SAFETY: the caller's guarantee, passed on.
            RelaxedSimd128(unsafe { Simd128::splat_load(p) })
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller's guarantee, passed on.
            RelaxedSimd128(unsafe { Simd128::load(p) })
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller's guarantee, passed on.
            unsafe { self.0.store(p) }
        }

        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            RelaxedSimd128(Simd128(f32x4_relaxed_madd(a.0 .0, b.0 .0, self.0 .0)))
        }

        #[inline(always)]
        fn relu(self) -> Self {
            RelaxedSimd128(self.0.relu())
        }
    }
}
