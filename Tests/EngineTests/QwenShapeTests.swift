import CKernels
import Engine
import Foundation
import XCTest

/// A qwen2 model at Qwen 2.5 0.5B's real widths: d_model 896 (28 blocks a row: the kernels'
/// steps end unevenly, and a Q4_K_M file holds those matrices as Q5_0 and Q8_0), 14 query
/// heads on 2 KV heads, head dim 64, FFN 4864 (ffn_down in Q4_K and Q6_K; layer 1's attn_q and
/// ffn_up in Q5_1, as a Q5_K_M file holds them), RoPE base 10^6,
/// eps 1e-6, biases, tied embeddings; two layers and 384 tokens. The 20 MB file is built here
/// with the generator and rules of Reference/make_qwen25_shapes.py, whose float64 NumPy
/// forward pass (gguf-py's dequantization) gave the logits.
final class QwenShapeTests: XCTestCase {
    private static let golden: [String: Any] = {
        try! TestSupport.referenceJSON("tiny/qwen25_shapes_logits.json") as! [String: Any]
    }()

    /// The model file, built once for the class.
    private static let path: String = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("qwen25-shapes-\(UUID().uuidString).gguf")
        let (builder, _) = build(seed: UInt64(golden["seed"] as! Int))
        try! Data(builder.build()).write(to: url)
        return url.path
    }()

    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: path)
        super.tearDown()
    }

    private enum Role { case embd, q5, q8, k, norm, bias }

    /// The script's tensors in file order: (name, type, rows, cols, role).
    private static func specs() -> [(String, GGMLType, Int, Int, Role)] {
        let d = 896, ff = 4864, kv = 128
        var s: [(String, GGMLType, Int, Int, Role)] = [("token_embd.weight", .q8_0, 384, d, .embd)]
        for layer in 0..<2 {
            let p = "blk.\(layer)."
            s += [(p + "attn_norm.weight", .f32, 1, d, .norm),
                  (p + "attn_q.weight", layer == 0 ? .q5_0 : .q5_1, d, d, .q5), (p + "attn_q.bias", .f32, 1, d, .bias),
                  (p + "attn_k.weight", .q5_0, kv, d, .q5), (p + "attn_k.bias", .f32, 1, kv, .bias),
                  (p + "attn_v.weight", .q8_0, kv, d, .q8), (p + "attn_v.bias", .f32, 1, kv, .bias),
                  (p + "attn_output.weight", .q5_0, d, d, .q5),
                  (p + "ffn_norm.weight", .f32, 1, d, .norm),
                  (p + "ffn_gate.weight", .q5_0, ff, d, .q5), (p + "ffn_up.weight", layer == 0 ? .q5_0 : .q5_1, ff, d, .q5),
                  (p + "ffn_down.weight", layer == 0 ? .q4_K : .q6_K, d, ff, .k)]
        }
        return s + [("output_norm.weight", .f32, 1, d, .norm)]
    }

    /// The script's construction (its docstring has the rules); returns the file and the checksum
    /// of its tensors' bytes.
    private static func build(seed: UInt64) -> (GGUFBuilder, UInt64) {
        var rng = RandomGenerator(seed: seed)
        var b = try! GGUFBuilder(copying: GGUFFile(path: TestSupport.referenceURL("tiny/tiny-qwen2.gguf").path),
                                 metadataWhere: { $0.hasPrefix("tokenizer.") || $0 == "general.architecture" }, tensors: false)
        for (key, value) in [("block_count", 2), ("context_length", 32768), ("embedding_length", 896), ("feed_forward_length", 4864),
                             ("attention.head_count", 14), ("attention.head_count_kv", 2), ("rope.dimension_count", 64)] {
            b.set("qwen2." + key, .u32(UInt32(value)))
        }
        b.set("qwen2.rope.freq_base", .f32(1_000_000))
        b.set("qwen2.attention.layer_norm_rms_epsilon", .f32(1e-6))
        let scales: [Role: UInt16] = [.embd: 0x1819, .q8: 0x0E8E, .q5: 0x1A25]
        var all: [UInt8] = []
        for (name, type, rows, cols, role) in specs() {
            var data: [UInt8]
            if type == .f32 {
                data = []
                for _ in 0..<rows * cols {
                    let u = rng.nextUnit()
                    let v = Float(role == .norm ? 1 + 0.2 * (u - 0.5) : 0.2 * (u - 0.5))
                    withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
                }
            } else {
                let total = type.byteCount(elements: rows * cols)
                data = []
                data.reserveCapacity(total + 8)
                while data.count < total { withUnsafeBytes(of: rng.next().littleEndian) { data.append(contentsOf: $0) } }
                data.removeLast(data.count - total)
                func put(_ at: Int, _ bits: UInt16) { data[at] = UInt8(bits & 0xff); data[at + 1] = UInt8(bits >> 8) }
                for block in stride(from: 0, to: total, by: type.blockBytes) {
                    switch type {
                    case .q4_K:
                        put(block, 0x0A8E); put(block + 2, 0x1625)
                        for i in 4..<16 { data[block + i] = 0x88 }
                    case .q6_K:
                        for i in 192..<208 { data[block + i] = UInt8(bitPattern: Int8(Int(data[block + i]) % 33 - 16)) }
                        put(block + 208, 0x068E)
                    case .q5_1: put(block, scales[role]!); put(block + 2, 0xA9E3)
                    default: put(block, scales[role]!)
                    }
                }
            }
            all += data
            b.tensors.append((name, [UInt64(cols)] + (rows > 1 ? [UInt64(rows)] : []), UInt32(type.rawValue), data))
        }
        // Σ word_i · (2i + 1) mod 2^64 over all tensors' bytes, as the script sums them.
        all += [UInt8](repeating: 0, count: (8 - all.count % 8) % 8)
        let sum = all.withUnsafeBytes { raw in
            raw.bindMemory(to: UInt64.self).enumerated().reduce(UInt64(0)) { $0 &+ UInt64(littleEndian: $1.element) &* (2 &* UInt64($1.offset) &+ 1) }
        }
        return (b, sum)
    }

    func testTheFileIsTheScriptsFile() {
        XCTAssertEqual(String(Self.build(seed: UInt64(Self.golden["seed"] as! Int)).1), Self.golden["checksum"] as? String)
    }

    /// The exact float path against the NumPy logits at every position, within 1e-3 of each
    /// (as TinyModelTests holds the tiny models).
    func testExactPathMatchesNumPy() throws {
        let model = try Transformer(path: Self.path, threads: 2)
        model.fastPath = false
        XCTAssertEqual(model.config.ropeMode, .neox)
        let tokens = try XCTUnwrap(Self.golden["tokens"] as? [Int]), expected = try XCTUnwrap(Self.golden["logits"] as? [[Double]])
        let cache = model.makeCache()
        var worst = 0.0
        for (pos, token) in tokens.enumerated() {
            let logits = model.forward(token: token, cache: cache)
            for (i, e) in expected[pos].enumerated() {
                worst = max(worst, abs(Double(logits[i]) - e))
                guard abs(Double(logits[i]) - e) < 1e-3 * max(1, abs(e)) else {
                    return XCTFail("position \(pos) logit \(i): \(logits[i]) against \(e)")
                }
            }
        }
        print("Qwen 2.5 shapes, exact path: worst logit difference \(worst)")
    }

    /// The fast path: int8 activations, Q5_0 and Q4_K multiplied as their Q5_1X and Q4_1X
    /// copies (Q6_K as Q6_0X), decoding token by token and in one prefill chunk (the int8
    /// micro-kernels where the CPU has VNNI), held to the NumPy logits within 0.5 (measured: up
    /// to 0.30 at a logit of 21, 0.05 on average, alike with the AVX2 kernels: the int8
    /// activations' rounding over rows 4864 wide), the top token the same wherever it leads by 0.5.
    func testFastPathAndPrefillStayNearNumPy() throws {
        let model = try Transformer(path: Self.path, threads: 2)
        XCTAssertTrue(model.fastPath)
        let layer = model.weights.layers[0]
        XCTAssertEqual(layer.wq.int8Copy?.type, Int32(CK_TYPE_Q5_1X.rawValue))
        XCTAssertEqual(model.weights.layers[1].wq.type, .q5_1)
        XCTAssertEqual(model.weights.layers[1].wq.int8Copy?.type, Int32(CK_TYPE_Q5_1X.rawValue))
        XCTAssertEqual(layer.wDown.int8Copy?.type, Int32(CK_TYPE_Q4_1X.rawValue))
        XCTAssertEqual(model.weights.layers[1].wDown.int8Copy?.type, Int32(CK_TYPE_Q6_0X.rawValue))
        let tokens = try XCTUnwrap(Self.golden["tokens"] as? [Int]), expected = try XCTUnwrap(Self.golden["logits"] as? [[Double]])
        var worst = 0.0
        func check(_ logits: [Float], _ pos: Int, _ what: String) {
            worst = max(worst, zip(logits, expected[pos]).map { abs(Double($0) - $1) }.max()!)
            let order = expected[pos].indices.sorted { expected[pos][$0] > expected[pos][$1] }
            if expected[pos][order[0]] - expected[pos][order[1]] > 0.5 {
                XCTAssertEqual(logits.indices.max { logits[$0] < logits[$1] }, order[0], "\(what) position \(pos)")
            }
        }
        let cache = model.makeCache()
        for (pos, token) in tokens.enumerated() { check(Array(model.forward(token: token, cache: cache)), pos, "decoding") }
        check(Array(model.prefill(tokens, cache: model.makeCache())), tokens.count - 1, "prefill")
        print("Qwen 2.5 shapes, fast path: worst logit difference \(worst)")
        XCTAssertLessThan(worst, 0.5)
    }
}
