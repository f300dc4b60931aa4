import Engine
import XCTest

/// Synthetic 2-layer models (Reference/make_tiny_models.py) cover what the default model
/// does not: qwen2 (Q/K/V biases, rotate-half RoPE), qwen3 (q/k norms), Llama 3's RoPE
/// frequency factors, an untied output head, and the F32, F16,
/// Q4_0, Q5_0, Q8_0, Q4_K and Q6_K types inside a forward pass. Logits at every position are
/// held to the script's float64 NumPy forward pass.
final class TinyModelTests: XCTestCase {
    /// The fast path on the same models: int8 activations, and the int8 copies (Q8_0 rows made
    /// at load) of their Q5_0, Q4_K, Q5_K and Q6_K matrices. Held to the float64 logits within
    /// 0.15 (measured: up to 0.061), every position's top token the same where it leads by 0.2.
    func testFastPathOnTinyModels() throws {
        let json = try XCTUnwrap(TestSupport.referenceJSON("tiny/tiny_logits.json") as? [String: Any])
        var worst = 0.0
        for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-llama3"] {
            let ref = try XCTUnwrap(json[name] as? [String: Any])
            let tokens = try XCTUnwrap(ref["tokens"] as? [Int]), expected = try XCTUnwrap(ref["logits"] as? [[Double]])
            let model = try Transformer(path: TestSupport.referenceURL("tiny/\(name).gguf").path, threads: 2)
            XCTAssertTrue(model.fastPath)
            let cache = model.makeCache()
            for (pos, token) in tokens.enumerated() {
                let logits = Array(model.forward(token: token, cache: cache))
                worst = max(worst, zip(logits, expected[pos]).map { abs(Double($0) - $1) }.max()!)
                let order = expected[pos].indices.sorted { expected[pos][$0] > expected[pos][$1] }
                if expected[pos][order[0]] - expected[pos][order[1]] > 0.2 {
                    XCTAssertEqual(logits.indices.max { logits[$0] < logits[$1] }, order[0], "\(name) position \(pos)")
                }
            }
        }
        print("tiny models, fast path: worst logit difference \(worst)")
        XCTAssertLessThan(worst, 0.15)
    }

    func check(_ name: String, mode: ModelConfig.RopeMode, untied: Bool) throws {
        let json = try XCTUnwrap(TestSupport.referenceJSON("tiny/tiny_logits.json") as? [String: Any])
        let ref = try XCTUnwrap(json[name] as? [String: Any])
        let tokens = try XCTUnwrap(ref["tokens"] as? [Int])
        let expected = try XCTUnwrap(ref["logits"] as? [[Double]])
        let model = try Transformer(path: TestSupport.referenceURL("tiny/\(name).gguf").path, threads: 2)
        model.fastPath = false
        XCTAssertEqual(model.config.ropeMode, mode)
        XCTAssertEqual(model.weights.output.name, untied ? "output.weight" : "token_embd.weight")
        let cache = model.makeCache()
        var worst = 0.0
        for (pos, token) in tokens.enumerated() {
            let logits = model.forward(token: token, cache: cache)
            XCTAssertEqual(logits.count, expected[pos].count)
            for (i, e) in expected[pos].enumerated() {
                let diff = abs(Double(logits[i]) - e)
                worst = max(worst, diff)
                XCTAssertLessThan(diff, 1e-3 * max(1, abs(e)), "\(name) position \(pos) logit \(i)")
                if diff >= 1e-3 * max(1, abs(e)) { return }
            }
        }
        print("\(name): worst logit difference \(worst)")
    }

    func testTinyLlama() throws { try check("tiny-llama", mode: .normal, untied: true) }
    func testTinyQwen2() throws { try check("tiny-qwen2", mode: .neox, untied: true) }
    /// Qwen 3: q/k RMSNorm per head, no biases.
    func testTinyQwen3() throws { try check("tiny-qwen3", mode: .neox, untied: true) }
    /// Llama 3.x: RoPE frequency factors (without them the logits move by more than 0.05).
    func testTinyLlama3() throws { try check("tiny-llama3", mode: .normal, untied: true) }
}
