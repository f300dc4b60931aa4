// Shared x86 SIMD helpers for the kernel files: the AVX2 target attribute, the run-time CPU
// check, and small inline building blocks. Kernels are compiled per function for AVX2 and
// chosen at run time, so one binary runs on any x86-64 (and the scalar twins elsewhere).
#ifndef CK_SIMD_X86_H
#define CK_SIMD_X86_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CK_X86 1
#define CK_AVX2 __attribute__((target("avx2,fma,f16c")))

// Whether the CPU has AVX2, FMA and F16C (checked once; quants.c).
int ck_has_avx2(void);

// Half → float inside AVX2 code. Calling the portable ck_fp16_to_fp32 there would mix
// legacy-SSE code into a loop with live YMM state; the transition penalty made the Q4_1
// kernel 30× slower (perf: 95% of its time on the callee's `ret`).
CK_AVX2 static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

CK_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 16 bytes of packed nibbles → 32 uint8 codes: elements 0..15 low nibbles, 16..31 high.
CK_AVX2 static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
#endif

#endif
