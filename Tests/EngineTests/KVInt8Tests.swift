import CKernels
@testable import Engine
import XCTest

/// One query head over keys 0 ..< keys of KV head 0 through ck_attend_partial (or its scalar
/// twin), normalized: what ck_pool_attend_segments computes for a head over one run on one thread.
func attendOneHead(_ view: inout ck_kv_view, q: [Float], qSink: [Float], sinks: Int, keys: Int, headDim hd: Int,
                   scale: Float, reference: Bool) -> [Float] {
    var scores = [Float](repeating: 0, count: keys), m: Float = 0, l: Float = 0
    var acc = [Float](repeating: .nan, count: hd)
    let kernel = reference ? ck_attend_partial_ref : ck_attend_partial
    kernel(qSink, q, 1, Int64(sinks), &view, 0, 0, Int64(keys), Int32(hd), scale, &scores, &m, &l, &acc)
    return acc.map { $0 / l }
}

/// Int8 KV storage (--kv int8; attention.c): the row quantizer's error bound, the AVX2
/// attention against its scalar twin, and the real model with an int8 cache against f32.
final class KVInt8Tests: XCTestCase {
    /// Every value comes back within half a step of its group's scale: |x − x̂| ≤ max|group|/254.
    func testRoundTripErrorBound() {
        var rng = RandomGenerator(seed: 21)
        let n = 128
        for trial in 0..<50 {
            var x = (0..<n).map { _ in Float(rng.nextUnit() * 2 - 1) * (trial % 3 == 0 ? 40 : 1) }
            x[trial % n] *= 100   // one outlier: only its own group loses precision
            if trial == 7 { for i in 32..<64 { x[i] = 0 } }   // an all-zero group
            var q = [Int8](repeating: 0, count: n), scales = [Float](repeating: 0, count: n / 32)
            var y = [Float](repeating: .nan, count: n)
            ck_quantize_kv_row(x, &q, &scales, Int32(n))
            ck_dequantize_kv_row(q, scales, &y, Int32(n))
            for g in 0..<n / 32 {
                let amax = x[g * 32..<(g + 1) * 32].map(abs).max()!
                for i in g * 32..<(g + 1) * 32 {
                    XCTAssertLessThanOrEqual(abs(x[i] - y[i]), amax / 254 * 1.0001, "trial \(trial) index \(i)")
                }
            }
        }
    }

    /// The AVX2 partial kernel over int8 rows equals its scalar twin, and both equal the f32
    /// reference over the dequantized rows (same math, so only rounding apart).
    func testAttentionMatchesTwinAndDequantizedF32() {
        var rng = RandomGenerator(seed: 22)
        for (n, hd, sinks) in [(1, 64, 0), (37, 64, 4), (300, 128, 4), (5, 32, 8)] {
            let keys = (0..<n * hd).map { _ in Float(rng.nextUnit() * 4 - 2) }
            let values = (0..<n * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let q = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let qSink = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            var k8 = [Int8](repeating: 0, count: n * hd), v8 = k8
            var ks = [Float](repeating: 0, count: n * hd / 32), vs = ks
            for t in 0..<n {
                keys.withUnsafeBufferPointer { src in k8.withUnsafeMutableBufferPointer { dst in ks.withUnsafeMutableBufferPointer { s in
                    ck_quantize_kv_row(src.baseAddress! + t * hd, dst.baseAddress! + t * hd, s.baseAddress! + t * hd / 32, Int32(hd))
                } } }
                values.withUnsafeBufferPointer { src in v8.withUnsafeMutableBufferPointer { dst in vs.withUnsafeMutableBufferPointer { s in
                    ck_quantize_kv_row(src.baseAddress! + t * hd, dst.baseAddress! + t * hd, s.baseAddress! + t * hd / 32, Int32(hd))
                } } }
            }
            var kf = [Float](repeating: 0, count: n * hd), vf = kf
            for t in 0..<n {
                kf.withUnsafeMutableBufferPointer { ck_dequantize_kv_row(Array(k8[t * hd..<(t + 1) * hd]), Array(ks[t * hd / 32..<(t + 1) * hd / 32]), $0.baseAddress! + t * hd, Int32(hd)) }
                vf.withUnsafeMutableBufferPointer { ck_dequantize_kv_row(Array(v8[t * hd..<(t + 1) * hd]), Array(vs[t * hd / 32..<(t + 1) * hd / 32]), $0.baseAddress! + t * hd, Int32(hd)) }
            }
            var scores = [Float](repeating: 0, count: n), viaF32 = [Float](repeating: .nan, count: hd)
            let scale = 1 / Float(hd).squareRoot()
            // The view borrows the arrays' storage, so it lives only inside their pointer scopes.
            let (fast, ref) = k8.withUnsafeBufferPointer { kp in v8.withUnsafeBufferPointer { vp in
                ks.withUnsafeBufferPointer { ksp in vs.withUnsafeBufferPointer { vsp in
                    var view = ck_kv_view(type: Int32(CK_KV_Q8.rawValue), keys: kp.baseAddress, values: vp.baseAddress,
                                          key_scales: ksp.baseAddress, value_scales: vsp.baseAddress, capacity: Int64(n))
                    return (attendOneHead(&view, q: q, qSink: qSink, sinks: sinks, keys: n, headDim: hd, scale: scale, reference: false),
                            attendOneHead(&view, q: q, qSink: qSink, sinks: sinks, keys: n, headDim: hd, scale: scale, reference: true))
                } }
            } }
            ck_attend_head_ref(qSink, q, Int64(sinks), kf, vf, Int64(n), Int32(hd), Int64(hd), Int64(hd), scale, &scores, &viaF32)
            for i in 0..<hd {
                XCTAssertEqual(fast[i], ref[i], accuracy: 1e-5, "n \(n) hd \(hd) twin")
                XCTAssertEqual(ref[i], viaF32[i], accuracy: 1e-5, "n \(n) hd \(hd) against f32 of the same rows")
            }
        }
    }

    /// ck_pool_attend_segments (query groups sharing each key row, every run split over 2
    /// threads, partials merged) against ck_attend_head_ref run head by head, for f32 and int8
    /// storage, with sink queries, short (one split) and long (split) caches; and the AVX2
    /// partial kernel against its scalar twin.
    func testSplitGroupedAttentionMatchesPerHeadReference() {
        var rng = RandomGenerator(seed: 24)
        let pool = ck_pool_create(2)
        defer { ck_pool_destroy(pool) }
        let heads = 9, kvHeads = 3, hd = 64, capacity = 400, group = heads / kvHeads
        let q = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let qSink = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let keys = (0..<kvHeads * capacity * hd).map { _ in Float(rng.nextUnit() * 4 - 2) }
        let values = (0..<kvHeads * capacity * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        // Rows as int8 codes and scales, and those dequantized (what the int8 path must match).
        func quantized(_ rows: [Float]) -> (codes: [Int8], scales: [Float], back: [Float]) {
            var codes = [Int8](repeating: 0, count: rows.count), scales = [Float](repeating: 0, count: rows.count / 32)
            var back = [Float](repeating: 0, count: rows.count)
            for r in 0..<rows.count / hd {
                let row = Array(rows[r * hd..<(r + 1) * hd])
                var c = [Int8](repeating: 0, count: hd), sc = [Float](repeating: 0, count: hd / 32), y = [Float](repeating: 0, count: hd)
                ck_quantize_kv_row(row, &c, &sc, Int32(hd))
                ck_dequantize_kv_row(c, sc, &y, Int32(hd))
                codes.replaceSubrange(r * hd..<(r + 1) * hd, with: c)
                scales.replaceSubrange(r * hd / 32..<(r + 1) * hd / 32, with: sc)
                back.replaceSubrange(r * hd..<(r + 1) * hd, with: y)
            }
            return (codes, scales, back)
        }
        let (k8, ks, kf) = quantized(keys), (v8, vs, vf) = quantized(values)
        let stride = group * capacity + heads * (hd + 2)
        var scratch = [Float](repeating: 0, count: 2 * stride)
        for precision in KVPrecision.allCases {
            for nKeys in [5, 130, 400] {
                var out = [Float](repeating: .nan, count: heads * hd)
                let (rk, rv) = precision == .f32 ? (keys, values) : (kf, vf)
                k8.withUnsafeBufferPointer { k8p in v8.withUnsafeBufferPointer { v8p in keys.withUnsafeBufferPointer { kp in values.withUnsafeBufferPointer { vp in
                  ks.withUnsafeBufferPointer { ksp in vs.withUnsafeBufferPointer { vsp in
                    var view = precision == .f32
                        ? ck_kv_view(type: Int32(CK_KV_F32.rawValue), keys: kp.baseAddress, values: vp.baseAddress, key_scales: nil, value_scales: nil, capacity: Int64(capacity))
                        : ck_kv_view(type: Int32(CK_KV_Q8.rawValue), keys: k8p.baseAddress, values: v8p.baseAddress, key_scales: ksp.baseAddress, value_scales: vsp.baseAddress, capacity: Int64(capacity))
                    // Per KV head: the 4 sinks (sink query) and the rest, as decoding lists them.
                    var segs: [ck_kv_segment] = []
                    for h in 0..<kvHeads {
                        segs.append(view.segment(head: h, first: 0, count: 4, headDim: hd, sinkQuery: true, windowed: false, positions: nil))
                        segs.append(view.segment(head: h, first: 4, count: nKeys - 4, headDim: hd, sinkQuery: false, windowed: false, positions: nil))
                    }
                    let offsets: [Int32] = (0...kvHeads).map { Int32(2 * $0) }
                    ck_pool_attend_segments(pool, qSink, q, segs, offsets, Int32(heads), Int32(kvHeads), Int32(hd), 0.125,
                                            &scratch, Int64(stride), &out)
                    if nKeys == 130 {   // the AVX2 partial kernel against its twin, one group
                        var s1 = [Float](repeating: 0, count: group * nKeys), s2 = s1
                        var m1 = [Float](repeating: 0, count: group), l1 = m1, m2 = m1, l2 = m1
                        var a1 = [Float](repeating: 0, count: group * hd), a2 = a1
                        ck_attend_partial(qSink, q, Int32(group), 4, &view, 1, 3, Int64(nKeys), Int32(hd), 0.125, &s1, &m1, &l1, &a1)
                        ck_attend_partial_ref(qSink, q, Int32(group), 4, &view, 1, 3, Int64(nKeys), Int32(hd), 0.125, &s2, &m2, &l2, &a2)
                        for g in 0..<group {
                            XCTAssertEqual(m1[g], m2[g], accuracy: 1e-5)
                            XCTAssertEqual(l1[g], l2[g], accuracy: 1e-4 * l2[g])
                        }
                        for i in 0..<group * hd { XCTAssertEqual(a1[i], a2[i], accuracy: 1e-4) }
                    }
                  } }
                } } } }
                for h in 0..<heads {
                    let base = (h / group) * capacity * hd
                    var scores = [Float](repeating: 0, count: nKeys), expected = [Float](repeating: 0, count: hd)
                    ck_attend_head_ref(Array(qSink[h * hd..<(h + 1) * hd]), Array(q[h * hd..<(h + 1) * hd]), 4,
                                       Array(rk[base...]), Array(rv[base...]), Int64(nKeys), Int32(hd), Int64(hd), Int64(hd), 0.125,
                                       &scores, &expected)
                    for i in 0..<hd { XCTAssertEqual(out[h * hd + i], expected[i], accuracy: 1e-5, "\(precision) \(nKeys) keys head \(h)") }
                }
            }
        }
    }

    /// The decode attention kernels (AVX-512 where the CPU has it, and AVX2) against the scalar
    /// twin, f32 and int8 rows, for every (head_dim, group) the AVX-512 kernel specializes and
    /// three it does not (generic path), over key ranges that start inside the sinks, end in a
    /// partial block of sixteen, hold one key, or hold none.
    func testPartialAttentionKernelsMatchTwin() {
        var rng = RandomGenerator(seed: 25)
        let capacity = 140
        // Also Qwen 2.5's real shapes: 14 query heads over 2 KV heads at head dim 64 (0.5B),
        // 12/2 (1.5B), 16/2 (3B) and 28/4 (7B) at 128 — groups of 7, 6, 8 and 7.
        for (hd, group) in [(64, 3), (64, 4), (128, 4), (64, 2), (192, 3), (256, 2), (64, 7), (128, 6), (128, 8), (128, 7)] {
            let q = (0..<group * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let qSink = (0..<group * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let keys = (0..<2 * capacity * hd).map { _ in Float(rng.nextUnit() * 4 - 2) }
            let values = (0..<2 * capacity * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
            var k8 = [Int8](repeating: 0, count: keys.count), v8 = k8
            var ks = [Float](repeating: 0, count: keys.count / 32), vs = ks
            for r in 0..<2 * capacity {
                keys.withUnsafeBufferPointer { x in k8.withUnsafeMutableBufferPointer { c in ks.withUnsafeMutableBufferPointer { sc in
                    ck_quantize_kv_row(x.baseAddress! + r * hd, c.baseAddress! + r * hd, sc.baseAddress! + r * hd / 32, Int32(hd))
                } } }
                values.withUnsafeBufferPointer { x in v8.withUnsafeMutableBufferPointer { c in vs.withUnsafeMutableBufferPointer { sc in
                    ck_quantize_kv_row(x.baseAddress! + r * hd, c.baseAddress! + r * hd, sc.baseAddress! + r * hd / 32, Int32(hd))
                } } }
            }
            for allowAVX512 in ck_has_avx512vnni() != 0 ? [true, false] : [false] {
                let before = ck_set_avx512_allowed(allowAVX512 ? 1 : 0)
                defer { ck_set_avx512_allowed(before) }
                for precision in KVPrecision.allCases {
                    for (k0, k1) in [(0, 1), (3, 130), (0, 16), (20, 52), (7, 7)] {
                        let n = k1 - k0
                        var s1 = [Float](repeating: 0, count: max(1, group * n)), s2 = s1
                        var m1 = [Float](repeating: .nan, count: group), l1 = m1, m2 = m1, l2 = m1
                        var a1 = [Float](repeating: .nan, count: group * hd), a2 = a1
                        k8.withUnsafeBufferPointer { k8p in v8.withUnsafeBufferPointer { v8p in keys.withUnsafeBufferPointer { kp in
                          values.withUnsafeBufferPointer { vp in ks.withUnsafeBufferPointer { ksp in vs.withUnsafeBufferPointer { vsp in
                            var view = precision == .f32
                                ? ck_kv_view(type: Int32(CK_KV_F32.rawValue), keys: kp.baseAddress, values: vp.baseAddress,
                                             key_scales: nil, value_scales: nil, capacity: Int64(capacity))
                                : ck_kv_view(type: Int32(CK_KV_Q8.rawValue), keys: k8p.baseAddress, values: v8p.baseAddress,
                                             key_scales: ksp.baseAddress, value_scales: vsp.baseAddress, capacity: Int64(capacity))
                            ck_attend_partial(qSink, q, Int32(group), 4, &view, 1, Int64(k0), Int64(k1), Int32(hd), 0.125, &s1, &m1, &l1, &a1)
                            ck_attend_partial_ref(qSink, q, Int32(group), 4, &view, 1, Int64(k0), Int64(k1), Int32(hd), 0.125, &s2, &m2, &l2, &a2)
                        } } } } } }
                        let what = "hd \(hd) group \(group) \(precision) keys \(k0)..<\(k1) AVX-512 \(allowAVX512)"
                        for g in 0..<group {
                            if n == 0 {
                                XCTAssertEqual(m1[g], -.infinity, what)
                                XCTAssertEqual(l1[g], 0, what)
                                continue
                            }
                            XCTAssertEqual(m1[g], m2[g], accuracy: 1e-5, what)
                            XCTAssertEqual(l1[g], l2[g], accuracy: 1e-5 * l2[g], what)
                        }
                        for i in 0..<group * hd { XCTAssertEqual(a1[i], n == 0 ? 0 : a2[i], accuracy: 1e-4, what) }
                    }
                }
            }
        }
    }

    /// A window over int8 storage: the rows handed to the eviction hook are the stored
    /// ones within int8's step, in eviction order, each layer's own.
    func testEvictionHandsOverDequantizedRows() {
        var rng = RandomGenerator(seed: 23)
        let heads = 2, hd = 64, layers = 2
        let cache = KVCache(layerCount: layers, kvHeadCount: heads, headDim: hd, policy: CachePolicy(sinks: 1, window: 3),
                            precision: .int8)
        var stored: [[Float]] = []   // per (position, layer): keys then values, [kv_head][head_dim] each
        var handed: [(Int, Int, [Float])] = []
        cache.onEvict = { e in
            let k = (0..<heads).flatMap { Array(UnsafeBufferPointer(start: e.keys + $0 * e.stride, count: hd)) }
            let v = (0..<heads).flatMap { Array(UnsafeBufferPointer(start: e.values + $0 * e.stride, count: hd)) }
            handed.append((e.position, e.layer, k + v))
        }
        for p in 0..<10 {
            for l in 0..<layers {
                let k = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 6 - 3) }
                let v = (0..<heads * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
                stored.append(k + v)
                cache.store(layer: l, position: p, key: k, value: v)
            }
            cache.commit()
        }
        XCTAssertEqual(handed.map { $0.0 }, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
        for (p, l, rows) in handed {
            let original = stored[p * layers + l]
            for g in 0..<original.count / 32 {
                let group = g * 32..<(g + 1) * 32
                let amax = original[group].map(abs).max()!
                for i in group { XCTAssertLessThanOrEqual(abs(rows[i] - original[i]), amax / 254 * 1.0001, "position \(p) layer \(l)") }
            }
        }
        XCTAssertEqual(cache.bytesPerToken, 2 * layers * heads * (hd + hd / 32 * 4))
    }

    /// The real model with an int8 cache, against f32, through eviction (4 sinks + a
    /// 24-token window over a 30-odd-token text): logits relative to the top one (over the
    /// tokens within 10 of it) move by less than 0.5 (measured worst 0.29; for scale, the
    /// int8 activations of the fast path move them by 0.7). Perplexity: README.
    func testRealModelWithInt8CacheStaysClose() throws {
        let (model, tokenizer) = TestSupport.shared
        model.fastPath = false   // isolate the cache's error from the int8 activations'
        defer { model.fastPath = true }
        let text = "The pelican is a large water bird with a long beak and a pouch under it. It lives near coasts and lakes, and it eats fish."
        let ids = tokenizer.encode(text)
        XCTAssertGreaterThan(ids.count, 28)
        let policy = CachePolicy(sinks: 4, window: 24)
        var worst: Float = 0
        let f32 = model.makeCache(policy: policy), i8 = model.makeCache(policy: policy, precision: .int8)
        XCTAssertEqual(f32.bytesPerToken, 46_080)
        XCTAssertEqual(i8.bytesPerToken, 12_960)
        for id in ids {
            let a = Array(model.forward(token: id, cache: f32))
            let b = model.forward(token: id, cache: i8)
            let top = a.indices.max { a[$0] < a[$1] }!
            for t in a.indices where a[t] > a[top] - 10 {
                worst = max(worst, abs((b[t] - b[top]) - (a[t] - a[top])))
            }
        }
        print("int8 KV cache against f32: worst relative logit change \(worst)")
        XCTAssertLessThan(worst, 0.5)
    }
}
