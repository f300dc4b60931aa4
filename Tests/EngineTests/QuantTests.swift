import CKernels
import Engine
import XCTest

final class QuantTests: XCTestCase {
    /// Dequantization and float-path dots against gguf-py's dequantize (the independent
    /// reference; Reference/make_quant_vectors.py made the vectors).
    func testDequantizeAndDotMatchGGUFPy() throws {
        let json = try XCTUnwrap(TestSupport.referenceJSON("quant_vectors.json") as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        var seen = Set<Int>()
        for c in cases {
            let name = c["type"] as? String ?? "?"
            let type = Int32(try XCTUnwrap(c["type_id"] as? Int))
            let n = try XCTUnwrap(c["n"] as? Int)
            let raw = [UInt8](try XCTUnwrap(Data(base64Encoded: c["raw_b64"] as? String ?? "")))
            let expected = try XCTUnwrap(c["values"] as? [Double])
            let x = try XCTUnwrap(c["x"] as? [Double]).map(Float.init)
            let dot = try XCTUnwrap(c["dot"] as? Double)
            seen.insert(Int(type))
            var y = [Float](repeating: .nan, count: n)
            XCTAssertEqual(ck_dequantize_row(type, raw, &y, Int64(n)), 0, name)
            for i in 0..<n {
                XCTAssertEqual(Double(y[i]), expected[i], accuracy: 1e-6 * max(1, abs(expected[i])), "\(name)[\(i)]")
            }
            let scale = zip(expected, x).map { abs($0 * Double($1)) }.reduce(0, +)
            XCTAssertEqual(Double(ck_dot_row_f32_ref(type, raw, x, Int64(n))), dot, accuracy: 1e-5 * scale + 1e-6, "\(name) ref dot")
            XCTAssertEqual(Double(ck_dot_row_f32(type, raw, x, Int64(n))), dot, accuracy: 1e-5 * scale + 1e-6, "\(name) fast dot")
        }
        XCTAssertEqual(seen, Set(GGMLType.allCases.filter { $0 != .f32 }.map { Int($0.rawValue) }),
                       "every quantized type has reference vectors")
    }

    /// SIMD dots against their scalar twins on random rows of every type, including rows
    /// whose length is not a multiple of 8 (F32/F16 tails).
    func testSIMDMatchesScalarTwin() {
        var rng = RandomGenerator(seed: 42)
        for type in GGMLType.allCases {
            for blocks in [1, 3, 18] {
                let n = type.blockSize == 1 ? blocks * 32 + 5 : blocks * type.blockSize
                var raw = (0..<type.byteCount(elements: n)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                sanitizeScales(&raw, type: type)
                let x = (0..<n).map { _ in Float(rng.nextUnit() * 2 - 1) }
                let ref = ck_dot_row_f32_ref(Int32(type.rawValue), raw, x, Int64(n))
                let fast = ck_dot_row_f32(Int32(type.rawValue), raw, x, Int64(n))
                XCTAssertTrue(ref.isFinite, "\(type)")
                XCTAssertEqual(fast, ref, accuracy: 1e-4 * max(1, abs(ref)), "\(type) n=\(n)")
            }
        }
    }

    /// Random bytes make arbitrary (even NaN) f16 scales; overwrite them with small finite ones
    /// (0.1, or what `half` gives for each).
    private func sanitizeScales(_ raw: inout [UInt8], type: GGMLType, half: () -> UInt16 = { 0x2E66 }) {
        func put(_ at: Int) { let h = half(); raw[at] = UInt8(h & 0xff); raw[at + 1] = UInt8(h >> 8) }
        let bytes = type.blockBytes
        for b in stride(from: 0, to: raw.count, by: bytes) {
            switch type {
            case .f32:
                // Random bit patterns include NaN and huge values: use the value 0.5·(byte − 128)/128.
                let f = Float(Int(raw[b]) - 128) / 256
                withUnsafeBytes(of: f) { for i in 0..<4 { raw[b + i] = $0[i] } }
            case .f16: break // below: every element is a half
            case .q4_0, .q5_0, .q8_0: put(b)
            case .q4_1, .q5_1: put(b); put(b + 2)
            case .q4_K, .q5_K: put(b); put(b + 2)
            case .q6_K: put(b + 208)
            }
        }
        if type == .f16 {
            // Keep sign and low exponent/mantissa bits; force exponent near 2^-4: finite, small.
            for i in stride(from: 0, to: raw.count, by: 2) { raw[i + 1] = 0x2C | (raw[i + 1] & 0x83) }
        }
    }

    /// The int8 copies of the types with no int8 kernel of their own (ck_make_int8_copy), on
    /// random rows whose scales span 2^-10 to 4: each weight within its type's bound of the file's
    /// (assertInt8CopyHoldsWeights: Q5_0 and Q5_1 exact, the K-quants the f16 rounding of a sub-block's
    /// scale and min); the copy through the int8 kernels (AVX-512 VNNI,
    /// then AVX2) within 1e-4 of the scalar twin on the copy, and within the int8 path's bound of
    /// the file's float dot. Q5_0's and Q5_1's row lengths end the kernels' steps every way (18 blocks: a
    /// half step of the VNNI loop; 20 and 28: AVX2 pairs after groups of eight); 18 rows leave
    /// a partial group of sixteen. A scale beyond f16 in the copy (a crafted d of 65504) makes
    /// no copy.
    func testInt8CopiesHoldTheFileWeights() {
        var rng = RandomGenerator(seed: 23)
        let copies: [GGMLType: ck_type] = [.q5_0: CK_TYPE_Q5_1X, .q5_1: CK_TYPE_Q5_1X, .q4_K: CK_TYPE_Q4_1X, .q5_K: CK_TYPE_Q5_1X,
                                           .q6_K: CK_TYPE_Q6_0X]
        for type in [GGMLType.q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
            let t = Int32(type.rawValue), copyType = ck_int8_copy_type(t)
            XCTAssertEqual(copyType, Int32(copies[type]!.rawValue), "\(type)")
            for cols in type.blockSize == 32 ? [64, 576, 640, 896, 2048] : [256, 1024, 2048] {
                let rows = cols == 576 ? 18 : 6, rowBytes = type.byteCount(elements: cols)
                let copyRowBytes = cols / 32 * Int(ck_type_block_bytes(copyType))
                var raw = (0..<rows * rowBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                sanitizeScales(&raw, type: type) { Float16(Float(0x1p-10) * Float(1 << Int(rng.next() % 13))).bitPattern }
                var copy = [UInt8](repeating: 0, count: rows * cols / 32 * Int(ck_type_block_bytes(copyType)))
                XCTAssertEqual(ck_make_int8_copy(t, raw, &copy, Int64(cols), Int64(rows)), 0, "\(type)")
                raw.withUnsafeBytes { o in
                    copy.withUnsafeBytes { c in
                        assertInt8CopyHoldsWeights(type: type, original: o.baseAddress!, copy: c.baseAddress!, cols: cols, rows: Array(0..<rows))
                    }
                }
                let x = (0..<cols).map { _ in Float(rng.nextUnit() * 2 - 1) }
                var xq = [ck_block_q8](repeating: ck_block_q8(), count: cols / 32)
                ck_quantize_q8(x, &xq, Int64(cols))
                for allowVNNI in ck_has_avx512vnni() != 0 ? [true, false] : [false] {
                    let before = ck_set_avx512_allowed(allowVNNI ? 1 : 0)
                    defer { ck_set_avx512_allowed(before) }
                    var y = [Float](repeating: .nan, count: rows)
                    ck_matvec_q8(copyType, copy, xq, &y, Int64(cols), 0, Int64(rows))
                    for r in 0..<rows {
                        copy.withUnsafeBytes { c in
                            let twin = ck_dot_row_q8_ref(copyType, c.baseAddress! + r * copyRowBytes, xq, Int64(cols))
                            XCTAssertEqual(y[r], twin, accuracy: 1e-4 * max(1, abs(twin)), "\(type) \(cols) row \(r) twin, VNNI \(allowVNNI)")
                        }
                        raw.withUnsafeBytes { o in
                            let row = o.baseAddress! + r * rowBytes
                            var w = [Float](repeating: 0, count: cols)
                            ck_dequantize_row(t, row, &w, Int64(cols))
                            // x's int8 rounding (≤ d/2 an element) plus the copy's (≤ 1/200 of the row's weights here).
                            let bound = (0..<cols).map { abs(w[$0]) * (xq[$0 / 32].d / 2 + abs(x[$0]) / 200) }.reduce(0, +)
                            XCTAssertEqual(y[r], ck_dot_row_f32_ref(t, row, x, Int64(cols)), accuracy: bound * 1.01 + 1e-4,
                                           "\(type) \(cols) row \(r) VNNI \(allowVNNI)")
                        }
                    }
                }
            }
        }
        // Crafted scales: d = 65504 with a 6-bit multiplier (Q4_K) or an int8 one (Q6_K).
        for (type, at) in [(GGMLType.q4_K, 0), (.q6_K, 208)] {
            var raw = [UInt8](repeating: 0x7f, count: type.byteCount(elements: 256) * 2)
            for b in stride(from: 0, to: raw.count, by: type.blockBytes) {
                raw[b + at] = 0xff; raw[b + at + 1] = 0x7b
                if type == .q4_K { raw[b + 2] = 0; raw[b + 3] = 0 }
            }
            var copy = [UInt8](repeating: 0, count: 8 * Int(ck_type_block_bytes(ck_int8_copy_type(Int32(type.rawValue)))) * 2)
            XCTAssertEqual(ck_make_int8_copy(Int32(type.rawValue), raw, &copy, 256, 2), -1, "\(type)")
        }
    }

    /// GELU's AVX2 form (through exp) against the tanhf twin, over the range activations
    /// take and beyond (|g| up to 30, where it is 0 or g), with a tail that is not a multiple
    /// of 8: within 2e-6 of each value's size.
    func testGegluMatchesScalarTwin() {
        var rng = RandomGenerator(seed: 7)
        let n = 1003
        let gate = (0..<n).map { i in i < 40 ? Float(i - 20) * 1.5 : Float(rng.nextUnit() * 16 - 8) }
        let up = (0..<n).map { _ in Float(rng.nextUnit() * 4 - 2) }
        var fast = gate, ref = gate
        ck_geglu(&fast, up, Int32(n))
        ck_geglu_ref(&ref, up, Int32(n))
        for i in 0..<n {
            XCTAssertEqual(fast[i], ref[i], accuracy: 2e-6 * max(1, abs(gate[i] * up[i])), "gate \(gate[i])")
        }
    }

    func testHalfConversionMatchesSwiftFloat16() {
        for h in 0...UInt16.max {
            let mine = ck_fp16_to_fp32(h)
            let swift = Float(Float16(bitPattern: h))
            if swift.isNaN { XCTAssertTrue(mine.isNaN) } else { XCTAssertEqual(mine.bitPattern, swift.bitPattern, "half \(h)") }
        }
        var rng = RandomGenerator(seed: 7)
        for _ in 0..<100_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            if f.isNaN { continue }
            XCTAssertEqual(ck_fp32_to_fp16(f), Float16(f).bitPattern, "float \(f)")
        }
    }

    /// The int8 path: AVX2 quantization and dots against their scalar twins, and against the
    /// float path within the error that 8-bit activations allow.
    func testInt8PathMatchesTwinsAndFloatPath() {
        var rng = RandomGenerator(seed: 3)
        for type in GGMLType.allCases where ck_type_has_q8_path(Int32(type.rawValue)) != 0 {
            let n = 32 * 18
            var raw = (0..<type.byteCount(elements: n)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            sanitizeScales(&raw, type: type)
            let x = (0..<n).map { i in Float(rng.nextUnit() * 2 - 1) * (i % 7 == 0 ? 4 : 1) }
            var fast = [ck_block_q8](repeating: ck_block_q8(), count: n / 32), ref = fast
            ck_quantize_q8(x, &fast, Int64(n))
            ck_quantize_q8_ref(x, &ref, Int64(n))
            for b in 0..<n / 32 {
                XCTAssertEqual(fast[b].d, ref[b].d)
                XCTAssertEqual(fast[b].s, ref[b].s)
                XCTAssertEqual(withUnsafeBytes(of: fast[b].qs) { Array($0) }, withUnsafeBytes(of: ref[b].qs) { Array($0) })
            }
            let t = Int32(type.rawValue)
            let dotFast = ck_dot_row_q8(t, raw, fast, Int64(n)), dotRef = ck_dot_row_q8_ref(t, raw, ref, Int64(n))
            XCTAssertEqual(dotFast, dotRef, accuracy: 1e-4 * max(1, abs(dotRef)), "\(type)")
            // Against the float path: each block's x is off by ≤ d/2 per element.
            var w = [Float](repeating: 0, count: n)
            ck_dequantize_row(t, raw, &w, Int64(n))
            let bound = (0..<n).map { abs(w[$0]) * ref[$0 / 32].d / 2 }.reduce(0, +)
            XCTAssertEqual(dotRef, ck_dot_row_f32_ref(t, raw, x, Int64(n)), accuracy: bound * 1.01 + 1e-4, "\(type)")
        }
    }

    /// The AVX2 attention kernel (ck_attend_partial over f32 rows) against the plain
    /// per-head reference.
    func testAttentionMatchesScalarTwin() {
        var rng = RandomGenerator(seed: 5)
        let hd = 64, n = 300
        let q = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let keys = (0..<n * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let values = (0..<n * hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        let qSink = (0..<hd).map { _ in Float(rng.nextUnit() * 2 - 1) }
        var scores = [Float](repeating: 0, count: n), ref = [Float](repeating: 0, count: hd)
        let fast = keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in
            var view = ck_kv_view(type: Int32(CK_KV_F32.rawValue), keys: k.baseAddress, values: v.baseAddress,
                                  key_scales: nil, value_scales: nil, capacity: Int64(n))
            return attendOneHead(&view, q: q, qSink: qSink, sinks: 4, keys: n, headDim: hd, scale: 0.125, reference: false)
        } }
        ck_attend_head_ref(qSink, q, 4, keys, values, Int64(n), Int32(hd), Int64(hd), Int64(hd), 0.125, &scores, &ref)
        for i in 0..<hd { XCTAssertEqual(fast[i], ref[i], accuracy: 1e-5) }
    }

    /// The 4-row int8 kernel and its remainder rows against the scalar twin, row by row.
    func testInt8MatvecMatchesScalarRows() {
        var rng = RandomGenerator(seed: 11)
        for type in GGMLType.allCases where ck_type_has_q8_path(Int32(type.rawValue)) != 0 {
            let rows = 7, cols = 96
            var raw = (0..<rows * type.byteCount(elements: cols)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            sanitizeScales(&raw, type: type)
            let x = (0..<cols).map { _ in Float(rng.nextUnit() * 2 - 1) }
            var xq = [ck_block_q8](repeating: ck_block_q8(), count: cols / 32)
            ck_quantize_q8_ref(x, &xq, Int64(cols))
            var y = [Float](repeating: .nan, count: rows)
            ck_matvec_q8(Int32(type.rawValue), raw, xq, &y, Int64(cols), 0, Int64(rows))
            raw.withUnsafeBytes { base in
                for r in 0..<rows {
                    let expected = ck_dot_row_q8_ref(Int32(type.rawValue), base.baseAddress! + r * type.byteCount(elements: cols), xq, Int64(cols))
                    XCTAssertEqual(y[r], expected, accuracy: 1e-4 * max(1, abs(expected)), "\(type) row \(r)")
                }
            }
        }
    }

    /// Repacked Q4_1/Q8_0 rows: same values as the originals, and the decode kernels — the
    /// AVX-512 VNNI ones where the CPU has them, and the AVX2 ones — agree with the scalar
    /// twin on the original layout (row lengths with a full and a partial last group of
    /// eight blocks, 18 blocks ending in a half step of the four-block VNNI loop, 48 blocks in
    /// three registers of scales; row counts below, at and past a group of sixteen, which the
    /// VNNI kernels sum together).
    func testRepackedLayoutsMatchOriginals() {
        let hasVNNI = ck_has_avx512vnni() != 0
        for allowVNNI in hasVNNI ? [true, false] : [false] {
            let before = ck_set_avx512_allowed(allowVNNI ? 1 : 0)
            defer { ck_set_avx512_allowed(before) }
            XCTAssertEqual(ck_has_avx512vnni() != 0, allowVNNI)
            checkRepackedLayouts()
        }
    }

    /// The int8 matrix product (prefill's alternative to sgemm) is the decode kernel run for
    /// each token: bit for bit where it runs that kernel (everything without VNNI); with VNNI,
    /// Q4_1X, Q5_1X (Q5_0's copy), Q6_0X (Q6_K's) and Q8_0X go through the four-rows × two-tokens micro-kernels,
    /// whose block products are the same and only the final sums' order differs (within 1e-5). Rows
    /// 3..<10 leave a partial group of four; five tokens leave a lone one; 576 columns end in
    /// a half step.
    func testInt8MatmulIsMatvecPerToken() {
        var rng = RandomGenerator(seed: 17)
        for type in [GGMLType.q4_1, .q8_0, .q5_0, .q6_K] {
            let rows = 12, cols = type == .q6_K ? 768 : 576, tokens = 5, t = Int32(type.rawValue)
            let copied = type == .q5_0 || type == .q6_K
            let packed = copied ? ck_int8_copy_type(t) : ck_repacked_type(t, Int64(cols))
            let packedRowBytes = cols / 32 * Int(ck_type_block_bytes(packed))
            var raw = (0..<rows * type.byteCount(elements: cols)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            sanitizeScales(&raw, type: type)
            var w = [UInt8](repeating: 0, count: rows * packedRowBytes)
            if copied {
                XCTAssertEqual(ck_make_int8_copy(t, raw, &w, Int64(cols), Int64(rows)), 0)
            } else {
                ck_repack_rows(t, raw, &w, Int64(cols), Int64(rows))
            }
            var xq = [ck_block_q8](repeating: ck_block_q8(), count: tokens * cols / 32)
            let x = (0..<tokens * cols).map { _ in Float(rng.nextUnit() * 2 - 1) }
            ck_quantize_q8(x, &xq, Int64(tokens * cols))
            for allowVNNI in ck_has_avx512vnni() != 0 ? [true, false] : [false] {
                let before = ck_set_avx512_allowed(allowVNNI ? 1 : 0)
                defer { ck_set_avx512_allowed(before) }
                var product = [Float](repeating: .nan, count: tokens * rows)
                ck_matmul_q8(packed, w, xq, Int64(tokens), &product, Int64(rows), Int64(cols), 3, 10)
                for k in 0..<tokens {
                    var y = [Float](repeating: .nan, count: rows)
                    xq.withUnsafeBufferPointer { ck_matvec_q8(packed, w, $0.baseAddress! + k * cols / 32, &y, Int64(cols), 3, 10) }
                    for r in 3..<10 {
                        if allowVNNI {
                            XCTAssertEqual(product[k * rows + r], y[r], accuracy: 1e-5 * max(1, abs(y[r])), "\(type) token \(k) row \(r)")
                        } else {
                            XCTAssertEqual(product[k * rows + r], y[r], "\(type) token \(k) row \(r) VNNI \(allowVNNI)")
                        }
                    }
                    XCTAssertTrue(product[k * rows + 2].isNaN && product[k * rows + 10].isNaN, "rows outside the range untouched")
                    w.withUnsafeBytes { o in
                        xq.withUnsafeBufferPointer { xp in
                            let expected = ck_dot_row_q8_ref(packed, o.baseAddress! + 9 * packedRowBytes, xp.baseAddress! + k * cols / 32, Int64(cols))
                            XCTAssertEqual(product[k * rows + 9], expected, accuracy: 1e-4 * max(1, abs(expected)), "\(type) twin")
                        }
                    }
                }
            }
        }
    }

    private func checkRepackedLayouts() {
        var rng = RandomGenerator(seed: 13)
        for type in [GGMLType.q4_1, .q8_0] {
            // Columns: 18 and 48 blocks (the default model), 2 and 4 (no group of eight), 8, 12 and
            // 14 (a group of eight, then one, two or three pairs: the AVX2 kernels' tail).
            for (rows, cols) in [(7, 576), (5, 1536), (4, 64), (9, 128), (16, 576), (37, 1536), (3, 256), (5, 384), (6, 448)] {
                let t = Int32(type.rawValue)
                let packed = ck_repacked_type(t, Int64(cols))
                XCTAssertNotEqual(packed, t)
                let rowBytes = type.byteCount(elements: cols)
                var raw = (0..<rows * rowBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                sanitizeScales(&raw, type: type)
                var repacked = [UInt8](repeating: 0, count: raw.count)
                ck_repack_rows(t, raw, &repacked, Int64(cols), Int64(rows))
                let x = (0..<cols).map { _ in Float(rng.nextUnit() * 2 - 1) }
                var xq = [ck_block_q8](repeating: ck_block_q8(), count: cols / 32)
                ck_quantize_q8(x, &xq, Int64(cols))
                var y = [Float](repeating: .nan, count: rows)
                ck_matvec_q8(packed, repacked, xq, &y, Int64(cols), 0, Int64(rows))
                for r in 0..<rows {
                    raw.withUnsafeBytes { o in
                        repacked.withUnsafeBytes { p in
                            let orig = o.baseAddress! + r * rowBytes, pack = p.baseAddress! + r * rowBytes
                            var a = [Float](repeating: 0, count: cols), b = a
                            ck_dequantize_row(t, orig, &a, Int64(cols))
                            ck_dequantize_row(packed, pack, &b, Int64(cols))
                            XCTAssertEqual(a, b, "\(type) row \(r) values")
                            let expected = ck_dot_row_q8_ref(t, orig, xq, Int64(cols))
                            XCTAssertEqual(y[r], expected, accuracy: 1e-4 * max(1, abs(expected)), "\(type) \(cols) row \(r)")
                            XCTAssertEqual(ck_dot_row_f32(packed, pack, x, Int64(cols)), ck_dot_row_f32_ref(t, orig, x, Int64(cols)),
                                           accuracy: 1e-4 * max(1, abs(expected)), "\(type) float path")
                        }
                    }
                }
            }
        }
    }

    func testMatvecSplitsRowsExactly() throws {
        let model = TestSupport.shared.model
        let m = model.weights.layers[0].wGate   // [1536][576] Q4_1
        var rng = RandomGenerator(seed: 1)
        let x = (0..<m.cols).map { _ in Float(rng.nextUnit() - 0.5) }
        var one = [Float](repeating: 0, count: m.rows), two = one
        x.withUnsafeBufferPointer { xp in
            one.withUnsafeMutableBufferPointer { m.matvec(xp.baseAddress!, $0.baseAddress!, pool: ComputePool(threads: 1)) }
            two.withUnsafeMutableBufferPointer { m.matvec(xp.baseAddress!, $0.baseAddress!, pool: ComputePool(threads: 2)) }
        }
        XCTAssertEqual(one, two)
        // Row 0 against dequantize-then-dot.
        var w = [Float](repeating: 0, count: m.cols)
        w.withUnsafeMutableBufferPointer { m.dequantizeRow(0, into: $0.baseAddress!) }
        let expected = zip(w, x).map { Double($0) * Double($1) }.reduce(0, +)
        XCTAssertEqual(Double(one[0]), expected, accuracy: 1e-4)
    }
}
