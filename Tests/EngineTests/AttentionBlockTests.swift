import CKernels
@testable import Engine
import XCTest

/// Attention of a block of queries (attention_block.c, used by batched prefill): the sgemm
/// and online-softmax kernel against its plain scalar twin, and prefill through it against
/// feeding the same tokens one at a time.
final class AttentionBlockTests: XCTestCase {
    /// Random segments — f32 and int8 rows, sinks scored with separate queries, a windowed
    /// ring whose positions wrap, causal new keys, tiles longer than the kernel's 128 — give
    /// the same output through ck_attend_block and ck_attend_block_ref (tolerance 2e-5:
    /// sgemm's summation order and the polynomial exp are all that differ).
    func testKernelMatchesScalarTwin() {
        var rng = RandomGenerator(seed: 31)
        func random(_ n: Int, _ scale: Double = 1) -> [Float] { (0..<n).map { _ in Float((rng.nextUnit() * 2 - 1) * scale) } }
        for (nq, group, hd, held, window, sinks) in [(1, 1, 32, 0, 0, 0), (7, 3, 64, 300, 256, 4), (40, 2, 64, 520, 500, 4),
                                                      (5, 3, 32, 9, 5, 4), (33, 3, 64, 1000, 0, 1000),
                                                      (9, 7, 64, 300, 256, 4), (6, 6, 128, 140, 128, 4)] {   // Qwen 2.5's groups
            let pos0 = held + 17 // the stream went on past what the cache holds when windowed
            let qDim = group * hd + 5, kvDim = hd + 3 // strides wider than the rows
            let q = random(nq * qDim, 2), qSink = random(nq * qDim, 2)
            let qPos = (0..<nq).map { Int64(pos0 + $0) }
            // Cache rows: sinks at positions 0 ..< sinks, then a ring holding pos0-held+sinks ..< pos0, rotated.
            let heldSinks = min(sinks, held), ring = held - heldSinks
            var slotPos = (0..<heldSinks).map(Int64.init)
            let rotate = ring > 0 ? 7 % ring : 0
            slotPos += (0..<ring).map { Int64(pos0 - ring + ($0 + rotate) % ring) }
            let keys = random(held * hd, 3), values = random(held * hd)
            var k8 = [Int8](repeating: 0, count: held * hd), v8 = k8
            var ks = [Float](repeating: 0, count: held * hd / 32), vs = ks
            for t in 0..<held {
                ck_quantize_kv_row(Array(keys[t * hd..<(t + 1) * hd]), &k8[t * hd], &ks[t * hd / 32], Int32(hd))
                ck_quantize_kv_row(Array(values[t * hd..<(t + 1) * hd]), &v8[t * hd], &vs[t * hd / 32], Int32(hd))
            }
            let newK = random(nq * kvDim, 3), newV = random(nq * kvDim)
            for int8 in [false, true] {
                var outFast = [Float](repeating: .nan, count: nq * qDim), outRef = outFast
                keys.withUnsafeBufferPointer { kf in values.withUnsafeBufferPointer { vf in
                k8.withUnsafeBufferPointer { kq in v8.withUnsafeBufferPointer { vq in
                slotPos.withUnsafeBufferPointer { sp in qPos.withUnsafeBufferPointer { qp in
                newK.withUnsafeBufferPointer { nk in newV.withUnsafeBufferPointer { nv in
                ks.withUnsafeBufferPointer { ksp in vs.withUnsafeBufferPointer { vsp in
                    func cached(_ first: Int, _ count: Int, sinkQuery: Int32, windowed: Int32) -> ck_kv_segment {
                        int8 ? ck_kv_segment(type: Int32(CK_KV_Q8.rawValue), sink_query: sinkQuery, windowed: windowed,
                                             keys: kq.baseAddress! + first * hd, values: vq.baseAddress! + first * hd,
                                             key_scales: ksp.baseAddress! + first * hd / 32, value_scales: vsp.baseAddress! + first * hd / 32,
                                             row_stride: Int64(hd), count: Int64(count), positions: sp.baseAddress! + first)
                             : ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: sinkQuery, windowed: windowed,
                                             keys: kf.baseAddress! + first * hd, values: vf.baseAddress! + first * hd,
                                             key_scales: nil, value_scales: nil,
                                             row_stride: Int64(hd), count: Int64(count), positions: sp.baseAddress! + first)
                    }
                    var segs = [cached(0, heldSinks, sinkQuery: 1, windowed: 0), cached(heldSinks, ring, sinkQuery: 0, windowed: 1)]
                    segs.append(ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: 0, windowed: 1,
                                              keys: nk.baseAddress!, values: nv.baseAddress!, key_scales: nil, value_scales: nil,
                                              row_stride: Int64(kvDim), count: Int64(nq), positions: qp.baseAddress!))
                    segs = segs.filter { $0.count > 0 }
                    var scratch = [Float](repeating: .nan, count: Int(ck_attend_block_scratch(Int32(nq), Int32(group), Int32(hd))))
                    let scale = 1 / Float(hd).squareRoot()
                    ck_attend_block(q, qSink, Int64(qDim), Int32(nq), Int32(group), Int32(hd), qp.baseAddress!, Int64(window), Int64(sinks),
                                    segs, Int32(segs.count), scale, &scratch, &outFast, Int64(qDim))
                    ck_attend_block_ref(q, qSink, Int64(qDim), Int32(nq), Int32(group), Int32(hd), qp.baseAddress!, Int64(window), Int64(sinks),
                                        segs, Int32(segs.count), scale, &scratch, &outRef, Int64(qDim))
                } } } } } } } } } }
                for t in 0..<nq {
                    for i in 0..<group * hd {
                        XCTAssertEqual(outFast[t * qDim + i], outRef[t * qDim + i], accuracy: 2e-5,
                                       "nq \(nq) held \(held) window \(window) int8 \(int8) query \(t) element \(i)")
                    }
                }
            }
        }
    }

    /// Prefill in chunks that attend as blocks — a window shorter than a chunk, a stream far
    /// past the cache's capacity (sink keys then need separately rotated queries), f32 and
    /// int8 storage, and a dense cache — gives the logits of feeding one token at a time.
    func testBlockPrefillMatchesTokenByToken() throws {
        let model = try Transformer(path: TestSupport.referenceURL("tiny/tiny-llama.gguf").path, threads: 2)
        model.fastPath = false
        var rng = RandomGenerator(seed: 32)
        let tokens = (0..<90).map { _ in Int(rng.next() % UInt64(model.config.vocabSize)) }
        let cases: [(CachePolicy, KVPrecision, [Int])] = [
            (CachePolicy(sinks: 2, window: 5), .f32, [4, 30, 30, 26]),
            (CachePolicy(sinks: 4, window: 40), .f32, [3, 60, 27]),
            (CachePolicy(sinks: 4, window: 40), .int8, [3, 60, 27]),
            (.dense(96), .f32, [1, 50, 39]),
        ]
        for (policy, precision, chunks) in cases {
            let a = model.makeCache(policy: policy, precision: precision), b = model.makeCache(policy: policy, precision: precision)
            var worst: Float = 0, start = 0
            for size in chunks {
                let chunk = Array(tokens[start..<start + size])
                start += size
                var last: [Float] = []
                for t in chunk { last = Array(model.forward(token: t, cache: a)) }
                let batched = Array(model.prefill(chunk, cache: b))
                for i in 0..<last.count { worst = max(worst, abs(batched[i] - last[i])) }
            }
            // int8: the chunk's own keys are exact in the block path, quantized in the token path.
            XCTAssertLessThan(worst, precision == .f32 ? 1e-4 : 2e-2, "\(policy) \(precision)")
        }
    }
}
